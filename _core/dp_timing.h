/* The Server-Timing header's value, written in C: format(x * 1000.0, ".3f") for each duration,
 * the entries joined as django_prometheus.servertiming documents them.
 *
 * Python's formatter parses the format spec, builds a str per number and joins them: about
 * 1,500 instructions a request. Here the milliseconds are written from an integer count of
 * microseconds, which gives Python's digits whenever the decimal rounding is decided away from
 * a tie; anything else (a tie within 1e-6, a duration outside [0, 10^6 s), a count outside
 * [0, 10^18)) makes dp_timing_value return NULL without an exception, and the caller formats
 * that value in Python (the same text: the pure core's way).
 *
 * Public C API only (PyUnicode_New and its 1-byte data); nothing here depends on a CPython
 * version's internals. */
#ifndef DP_TIMING_H
#define DP_TIMING_H
#include <math.h>
#include <string.h>

/* The digits of x * 1000.0 with three decimals, as format(x * 1000.0, ".3f"); -1 when the
 * value is not written here. Exact: ms * 1000 below 10^9 is within 1.2e-7 of the exact product
 * (2^-53 relative), so outside 1e-6 of a tie it rounds to Python's decimal. */
static inline int dp_timing_ms(char *out, double seconds) {
    double ms = seconds * 1000.0;
    double scaled = ms * 1000.0, whole, frac;
    unsigned long long n, integral;
    char digits[24];
    int len = 0, i;
    unsigned fraction;
    if (!(scaled >= 0.0 && scaled < 1e9)) return -1;
    whole = floor(scaled);
    frac = scaled - whole;
    if (frac > 0.499999 && frac < 0.500001) return -1;
    n = (unsigned long long)whole + (frac > 0.5 ? 1u : 0u);
    integral = n / 1000u;
    fraction = (unsigned)(n % 1000u);
    do {
        digits[len++] = (char)('0' + integral % 10u);
        integral /= 10u;
    } while (integral);
    for (i = 0; i < len; i++) out[i] = digits[len - 1 - i];
    out[len++] = '.';
    out[len++] = (char)('0' + fraction / 100u);
    out[len++] = (char)('0' + fraction / 10u % 10u);
    out[len++] = (char)('0' + fraction % 10u);
    return len;
}

static inline int dp_timing_count(char *out, long long count) {
    char digits[24];
    int len = 0, i;
    if (count < 0 || count >= 1000000000000000000LL) return -1;
    do {
        digits[len++] = (char)('0' + count % 10);
        count /= 10;
    } while (count);
    for (i = 0; i < len; i++) out[i] = digits[len - 1 - i];
    return len;
}

#define DP_TIMING_PUT(b, n, s) (memcpy((b) + (n), (s), sizeof(s) - 1), (n) += (int)sizeof(s) - 1)

/* Appends "<ms>;desc=\"<count><unit>" after an entry's "name;dur=": the new length, or -1. */
static inline int dp_timing_counted(char *buf, int n, double seconds, long long count, const char *unit) {
    int k;
    size_t u = strlen(unit);
    if ((k = dp_timing_ms(buf + n, seconds)) < 0) return -1;
    n += k;
    DP_TIMING_PUT(buf, n, ";desc=\"");
    if ((k = dp_timing_count(buf + n, count)) < 0) return -1;
    n += k;
    memcpy(buf + n, unit, u);
    return n + (int)u;
}

/* "app;dur=A", then ", db;dur=D;desc=\"Q queries\"" when has_db, then
 * ", cache;dur=C;desc=\"K ops\"" when has_cache; NULL (no exception) when a number is not
 * written here, NULL with MemoryError when the str cannot be made. */
static inline PyObject *dp_timing_value(double app, int has_db, double db, long long queries,
                                        int has_cache, double cache, long long ops) {
    char buf[192];
    int n = 0, k;
    PyObject *value;
    DP_TIMING_PUT(buf, n, "app;dur=");
    if ((k = dp_timing_ms(buf + n, app)) < 0) return NULL;
    n += k;
    if (has_db) {
        DP_TIMING_PUT(buf, n, ", db;dur=");
        if ((n = dp_timing_counted(buf, n, db, queries, " queries\"")) < 0) return NULL;
    }
    if (has_cache) {
        DP_TIMING_PUT(buf, n, ", cache;dur=");
        if ((n = dp_timing_counted(buf, n, cache, ops, " ops\"")) < 0) return NULL;
    }
    value = PyUnicode_New(n, 127);
    if (value != NULL) memcpy(PyUnicode_1BYTE_DATA(value), buf, (size_t)n);
    return value;
}
#endif
