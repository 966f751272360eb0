/* A/B switches: DP_PLAIN (a bit mask, default 0) builds the core with internal tricks replaced
 * by the plain Cython / public C API way, from the same tree, for a same-layout measurement
 * (docs/performance.md, "Internal tricks, measured"). Never set in a release build. */
#ifndef DP_PLAIN_H
#define DP_PLAIN_H
#ifndef DP_PLAIN
#define DP_PLAIN 0
#endif
#define DP_PLAIN_TLS (((DP_PLAIN) & 1) != 0)
#define DP_PLAIN_STR (((DP_PLAIN) & 2) != 0)
#define DP_PLAIN_VECTORCALL (((DP_PLAIN) & 4) != 0)
#define DP_PLAIN_ITERNEXT (((DP_PLAIN) & 8) != 0)
#define DP_PLAIN_CALL1 (((DP_PLAIN) & 16) != 0)
#define DP_PLAIN_BORROWED (((DP_PLAIN) & 32) != 0)
#define DP_PLAIN_TIMING (((DP_PLAIN) & 64) != 0)
#define DP_PLAIN_DICTGET (((DP_PLAIN) & 128) != 0)
#define DP_PLAIN_CONTEXTVAR (((DP_PLAIN) & 256) != 0)
#define DP_PLAIN_EXTRAS_TLS (((DP_PLAIN) & 512) != 0)
#endif
