/* The monotonic clock of the compiled core: the one time.perf_counter() reads.
 * Included by the .pyx modules that time calls (a .pxd cannot be shared from
 * this folder, a header can: MANIFEST.in grafts _core, so the sdist carries it). */
#ifndef DP_CLOCK_H
#define DP_CLOCK_H
#ifdef _WIN32
#include <windows.h>
static double dp_clock(void) {
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
#else
#include <time.h>
static double dp_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
#endif
#endif
