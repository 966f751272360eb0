/* The clocks of the compiled core: dp_clock, the monotonic one time.perf_counter() reads, and
 * dp_wall, the wall clock time.time() reads (X-Request-Start is a stamp since the epoch).
 * Included by the .pyx modules that time calls (a .pxd cannot be shared from
 * this folder, a header can: MANIFEST.in grafts _core, so the sdist carries it). */
#ifndef DP_CLOCK_H
#define DP_CLOCK_H
#ifdef _WIN32
#include <windows.h>
static inline double dp_clock(void) {
    static double scale = 0.0;
    LARGE_INTEGER c;
    if (scale == 0.0) {
        LARGE_INTEGER f;
        QueryPerformanceFrequency(&f);
        scale = 1.0 / (double)f.QuadPart;
    }
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart * scale;
}
static inline double dp_wall(void) {
    FILETIME ft;
    ULARGE_INTEGER t;
    GetSystemTimePreciseAsFileTime(&ft);
    t.LowPart = ft.dwLowDateTime;
    t.HighPart = ft.dwHighDateTime;
    return (double)(t.QuadPart - 116444736000000000ULL) * 1e-7;
}
#else
#include <time.h>
static inline double dp_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static inline double dp_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
#endif
#endif
