/* A double's shortest round-trip decimal, and the text Python's repr() and prometheus_client's
 * floatToGoString make of it, without CPython's dtoa (a big-integer algorithm, most of a scrape
 * of arbitrary gauge values).
 *
 * The digits: Schubfach, as Raffaello Giulietti describes it ("The Schubfach way to render
 * doubles", 2020). v = c * 2**q has the rounding interval [u, w] (u = (c - 1/2) * 2**q, or
 * (c - 1/4) * 2**q just above a power of two, w = (c + 1/2) * 2**q; ends included when c is
 * even, as round-half-even parsing reads them). Scaled by 10**-k, k chosen so that the
 * interval is between 1 and 10 long, it holds at most one multiple of 10 (then that one is the
 * shortest decimal) and else at least one of floor(v) and floor(v) + 1 (then the closer one,
 * the even one on a tie). That is dtoa's mode 0, hence repr()'s digits.
 *
 * The scaled values: 4u, 4v and 4w times 10**-k are read through a 128-bit multiplier
 * g = ceil(10**-k * 2**E) (dp_pow10.h, written and proven by scripts/gen_pow10.py) as
 * floor(x) | (x is not an integer) ("round to odd"), which compares with every even integer
 * exactly as x does. The product overshoots x by less than 2**-68, so its fraction's top 64
 * bits decide that, except when they are all zero: then an exact test says whether x is an
 * integer (a matter of powers of 2 and 5 dividing it), and if it is not (x lies within 2**-64
 * above or 2**-68 below an integer, which 128 bits cannot order), the digits come from
 * CPython's own repr (dp_float_fallbacks counts those; the tests find none in millions).
 * Written from the paper's description; the tests compare every output with repr().
 */
#ifndef DP_FLOAT_H
#define DP_FLOAT_H
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(__SIZEOF_INT128__) && defined(_MSC_VER) && defined(_M_X64)
#include <intrin.h>
#endif
#include "dp_pow10.h"

/* How many doubles took the repr() fallback (tests read it; a race only miscounts). */
static uint64_t dp_float_fallbacks = 0;
/* Tests set it to send every finite nonzero double through the fallback. */
static int dp_float_force_fallback = 0;

/* The high 64 bits of a * b; the low ones in *lo. */
static inline uint64_t dp_mul64(uint64_t a, uint64_t b, uint64_t *lo) {
#if defined(__SIZEOF_INT128__)
    unsigned __int128 p = (unsigned __int128)a * b;
    *lo = (uint64_t)p;
    return (uint64_t)(p >> 64);
#elif defined(_MSC_VER) && defined(_M_X64)
    uint64_t hi;
    *lo = _umul128(a, b, &hi);
    return hi;
#else
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    *lo = (mid << 32) | (uint32_t)p00;
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
#endif
}

/* Whether x * 2**q / 10**k is an integer (x > 0; q >= k when k > 0, proven by the script). */
static inline int dp_scaled_is_int(uint64_t x, int q, int k) {
    if (k > 0) return k < 28 && x % dp_pow5[k] == 0;
    if (q >= k) return 1;
    return k - q < 64 && (x & ((UINT64_C(1) << (k - q)) - 1)) == 0;
}

/* Round to odd of x * 2**q / 10**k (g and sh from the table); 0 when 128 bits cannot tell. */
static inline int dp_rop(uint64_t x, const uint64_t *g, int sh, int q, int k, uint64_t *r) {
    uint64_t p0, lo1, hi1, p1, p2, f, i;
    uint64_t mid = dp_mul64(x, g[1], &p0);
    p2 = dp_mul64(x, g[0], &lo1);
    p1 = lo1 + mid;
    p2 += p1 < mid;
    hi1 = p1 >> sh;
    i = (p2 << (64 - sh)) | hi1;
    f = (p1 << (64 - sh)) | (p0 >> sh);
    if (f) {
        *r = i | 1;
        return 1;
    }
    *r = i;
    return dp_scaled_is_int(x, q, k);
}

/* |d| (finite, nonzero) = *m * 10***e10, *m shortest (no trailing zero) and closest; 0 when the
 * fallback must decide. */
static inline int dp_shortest(double d, uint64_t *m_out, int *e_out) {
    uint64_t bits, t, c, cb, cbl, cbr, vb, vbl, vbr, s, m, sp, tp;
    int be, q, k, sh, out, irregular, e10, upin, wpin;
    const uint64_t *g;
    memcpy(&bits, &d, sizeof bits);
    t = bits & ((UINT64_C(1) << 52) - 1);
    be = (int)((bits >> 52) & 0x7ff);
    if (be == 0) {
        c = t;
        q = -1074;
    } else {
        c = t | (UINT64_C(1) << 52);
        q = be - 1075;
    }
    if (q <= 0 && q >= -52 && (c & ((UINT64_C(1) << -q) - 1)) == 0) {
        /* An integer below 2**53: exact, so its own digits are the shortest. */
        m = c >> -q;
        e10 = 0;
        goto strip;
    }
    irregular = t == 0 && be > 1;
    k = irregular ? DP_FLOOR_LOG10_3Q_POW2(q) : DP_FLOOR_LOG10_POW2(q);
    g = dp_pow10_g[k - DP_POW10_KMIN];
    sh = 63 - DP_FLOOR_LOG2_POW10(-k) - q; /* E - q - 64, in [60, 63] */
    out = (int)(c & 1);                    /* an odd c: the interval's ends are outside */
    cb = c << 2;
    cbl = cb - 2 + (uint64_t)irregular;
    cbr = cb + 2;
    if (!dp_rop(cb, g, sh, q, k, &vb) || !dp_rop(cbl, g, sh, q, k, &vbl) || !dp_rop(cbr, g, sh, q, k, &vbr))
        return 0;
    s = vb >> 2;
    sp = s - s % 10;
    tp = sp + 10;
    upin = vbl + (uint64_t)out <= sp << 2;
    wpin = (tp << 2) + (uint64_t)out <= vbr;
    if (upin != wpin) {
        m = upin ? sp : tp;
        e10 = k;
        goto strip;
    }
    upin = vbl + (uint64_t)out <= s << 2;
    wpin = ((s + 1) << 2) + (uint64_t)out <= vbr;
    if (upin != wpin)
        m = upin ? s : s + 1;
    else /* both in: the closer, the even one on a tie */
        m = (vb < (s << 2) + 2 || (vb == (s << 2) + 2 && !(s & 1))) ? s : s + 1;
    *m_out = m;
    *e_out = k;
    return 1;
strip:
    while (m % 10 == 0) {
        m /= 10;
        e10++;
    }
    *m_out = m;
    *e_out = e10;
    return 1;
}

/* The digits of |d| (finite, nonzero) into dig (at least 20 bytes), their count returned;
 * *decpt: where the point goes (|d| = 0.DIGITS * 10**decpt). -1 with an exception set on failure. */
static int dp_digits(double d, char *dig, int *decpt) {
    uint64_t m, pair;
    int e10, n = 0;
    char tmp[24], *p = tmp + sizeof tmp;
    if (!dp_float_force_fallback && dp_shortest(d, &m, &e10)) {
        while (m >= 100) {
            pair = m % 100;
            m /= 100;
            p -= 2;
            memcpy(p, dp_digit_pairs + 2 * pair, 2);
        }
        if (m >= 10) {
            p -= 2;
            memcpy(p, dp_digit_pairs + 2 * m, 2);
        } else {
            *--p = (char)('0' + m);
        }
        n = (int)(tmp + sizeof tmp - p);
        memcpy(dig, p, (size_t)n);
        *decpt = n + e10;
        return n;
    } else {
        /* CPython's repr of |d|: "123.45", "0.00012", "1.5e-07" or "1e+22", read back. */
        char *r = PyOS_double_to_string(fabs(d), 'r', 0, 0, NULL);
        char all[40];
        const char *c;
        int point = -1, zeros = 0;
        if (r == NULL) return -1;
        dp_float_fallbacks++;
        for (c = r; *c && *c != 'e'; c++) {
            if (*c == '.')
                point = n;
            else if (n < 40)
                all[n++] = *c;
        }
        if (point < 0) point = n;
        if (*c == 'e') point += atoi(c + 1);
        PyMem_Free(r);
        while (zeros < n - 1 && all[zeros] == '0') zeros++;
        n -= zeros;
        while (n > 1 && all[zeros + n - 1] == '0') n--;
        if (n > 20) n = 20; /* (repr writes at most 17) */
        memcpy(dig, all + zeros, (size_t)n);
        *decpt = point - zeros;
        return n;
    }
}

/* Python's repr() of a finite double, into out (at least 32 bytes); its length, -1 on failure. */
static Py_ssize_t dp_repr_finite(double d, char *out) {
    char dig[20];
    int n, decpt, k = 0, i, e;
    if (signbit(d)) out[k++] = '-';
    if (d == 0) {
        memcpy(out + k, "0.0", 3);
        return k + 3;
    }
    n = dp_digits(d, dig, &decpt);
    if (n < 0) return -1;
    if (decpt <= -4 || decpt > 16) { /* 1e+16, 1.5e-05 */
        out[k++] = dig[0];
        if (n > 1) {
            out[k++] = '.';
            memcpy(out + k, dig + 1, (size_t)(n - 1));
            k += n - 1;
        }
        e = decpt - 1;
        out[k++] = 'e';
        out[k++] = e < 0 ? '-' : '+';
        if (e < 0) e = -e;
        if (e >= 100) out[k++] = (char)('0' + e / 100);
        out[k++] = (char)('0' + e / 10 % 10);
        out[k++] = (char)('0' + e % 10);
    } else if (decpt <= 0) { /* 0.00015 */
        out[k++] = '0';
        out[k++] = '.';
        for (i = 0; i < -decpt; i++) out[k++] = '0';
        memcpy(out + k, dig, (size_t)n);
        k += n;
    } else if (n <= decpt) { /* 1500.0 */
        memcpy(out + k, dig, (size_t)n);
        k += n;
        for (i = n; i < decpt; i++) out[k++] = '0';
        out[k++] = '.';
        out[k++] = '0';
    } else { /* 15.25 */
        memcpy(out + k, dig, (size_t)decpt);
        k += decpt;
        out[k++] = '.';
        memcpy(out + k, dig + decpt, (size_t)(n - decpt));
        k += n - decpt;
    }
    return k;
}

/* Python's repr() of any double, into out (at least 32 bytes): inf, -inf, nan as repr() spells
 * them. Its length, -1 on failure. */
static Py_ssize_t dp_repr(double d, char *out) {
    if (isnan(d)) {
        memcpy(out, "nan", 3);
        return 3;
    }
    if (isinf(d)) {
        if (d > 0) {
            memcpy(out, "inf", 3);
            return 3;
        }
        memcpy(out, "-inf", 4);
        return 4;
    }
    return dp_repr_finite(d, out);
}

/* prometheus_client's floatToGoString (repr(), but Go's exponents from 1e+06 up to where repr
 * takes them over, and +Inf, -Inf, NaN), into out (at least 32 bytes); exp2: two-digit
 * exponents (its releases from 0.21 on; before, "e+0" and the exponent). Its length, -1 on
 * failure. */
static Py_ssize_t dp_gofloat(double d, char *out, int exp2) {
    char dig[20];
    int n, decpt, k, e;
    if (isnan(d)) {
        memcpy(out, "NaN", 3);
        return 3;
    }
    if (isinf(d)) {
        memcpy(out, d > 0 ? "+Inf" : "-Inf", 4);
        return 4;
    }
    if (!(d >= 1e6 && d < 1e16)) return dp_repr_finite(d, out);
    /* repr() would write 7 to 16 digits before its point: "1.2345e+06" instead */
    n = dp_digits(d, dig, &decpt);
    if (n < 0) return -1;
    out[0] = dig[0];
    k = 1;
    if (n > 1) {
        out[k++] = '.';
        memcpy(out + k, dig + 1, (size_t)(n - 1));
        k += n - 1;
    }
    e = decpt - 1;
    out[k++] = 'e';
    out[k++] = '+';
    if (exp2 || e >= 10) {
        if (!exp2) out[k++] = '0';
        out[k++] = (char)('0' + e / 10);
    } else {
        out[k++] = '0';
    }
    out[k++] = (char)('0' + e % 10);
    return k;
}

/* --- For the tests only: every output held to CPython's repr() ------------------------------ */

/* floatToGoString the way this writer made it before dp_float.h: from CPython's repr. */
static Py_ssize_t dp_gofloat_reference(const char *r, double d, char *out, int exp2) {
    Py_ssize_t n = (Py_ssize_t)strlen(r), dot = -1, i, k;
    if (isinf(d)) { memcpy(out, d > 0 ? "+Inf" : "-Inf", 4); return 4; }
    if (isnan(d)) { memcpy(out, "NaN", 3); return 3; }
    for (i = 0; i < n; i++) if (r[i] == '.') { dot = i; break; }
    if (d > 0 && dot > 6) {
        k = 0;
        out[k++] = r[0];
        out[k++] = '.';
        for (i = 1; i < dot; i++) out[k++] = r[i];
        for (i = dot + 1; i < n; i++) out[k++] = r[i];
        while (k > 0 && (out[k - 1] == '0' || out[k - 1] == '.')) k--;
        return k + sprintf(out + k, exp2 ? "e+%02d" : "e+0%d", (int)(dot - 1));
    }
    memcpy(out, r, (size_t)n);
    return n;
}

static inline uint64_t dp_splitmix64(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* One double against repr() and the reference floatToGoString (both exponent styles): 0 if
 * all agree, 1 if not, -1 with an exception set. */
static int dp_float_check_one(double d) {
    char ours[64], ref[64];
    Py_ssize_t n, m;
    int exp2;
    char *r = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL) return -1;
    n = dp_repr(d, ours);
    if (n < 0 || n != (Py_ssize_t)strlen(r) || memcmp(ours, r, (size_t)n) != 0) {
        PyMem_Free(r);
        return n < 0 ? -1 : 1;
    }
    for (exp2 = 0; exp2 < 2; exp2++) {
        n = dp_gofloat(d, ours, exp2);
        m = dp_gofloat_reference(r, d, ref, exp2);
        if (n < 0 || n != m || memcmp(ours, ref, (size_t)n) != 0) {
            PyMem_Free(r);
            return n < 0 ? -1 : 1;
        }
    }
    PyMem_Free(r);
    return 0;
}

/* n doubles (and, but for mode 0 and 3, both neighbours of each), mode 0: random bit patterns;
 * 1: decimals of 1 to 17 random digits at random exponents, as strtod reads them; 2: what
 * gauges hold (uniform doubles at every scale, integers divided by powers of ten); 3: the bit
 * patterns seed, seed + 1, ... Returns how many disagree, the first in *bad; -1 on error. */
static int64_t dp_float_check(int64_t n, uint64_t seed, int mode, double *bad) {
    uint64_t state = seed, bits, u, m;
    int64_t i, wrong = 0;
    double d, ds[3];
    int j, nd, e, nds, rc;
    char text[48];
    static const double p10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    for (i = 0; i < n; i++) {
        u = dp_splitmix64(&state);
        if (mode == 0) {
            memcpy(&d, &u, sizeof d);
        } else if (mode == 1) {
            nd = 1 + (int)(u % 17);
            m = dp_splitmix64(&state) % 100000000000000000u;
            while (m >= (uint64_t)pow(10, nd)) m /= 10;
            e = (int)((u >> 8) % 650) - 340;
            snprintf(text, sizeof text, "%llue%d", (unsigned long long)m, e);
            d = PyOS_string_to_double(text, NULL, NULL);
            if (d == -1.0 && PyErr_Occurred()) return -1;
        } else if (mode == 2) {
            if (u & 1)
                d = (double)(dp_splitmix64(&state) >> 11) / 9007199254740992.0 * pow(10, (int)((u >> 1) % 20) - 8);
            else
                d = (double)(dp_splitmix64(&state) % 100000000u) / p10[(u >> 1) % 10];
            if (u & 2) d = -d;
        } else {
            bits = seed + (uint64_t)i;
            memcpy(&d, &bits, sizeof d);
        }
        ds[0] = d;
        nds = 1;
        if (mode == 1 || mode == 2) {
            memcpy(&bits, &d, sizeof bits);
            bits++;
            memcpy(&ds[1], &bits, sizeof d);
            bits -= 2;
            memcpy(&ds[2], &bits, sizeof d);
            nds = d == 0 ? 1 : 3;
        }
        for (j = 0; j < nds; j++) {
            rc = dp_float_check_one(ds[j]);
            if (rc < 0) return -1;
            if (rc && !wrong++) *bad = ds[j];
        }
    }
    return wrong;
}

#endif
