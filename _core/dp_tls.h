/* The thread-local slot of the compiled HTTP core: what the After recorder's _begin left for
 * on_view and _end on the same thread (the request, its kind and view).
 *
 * A slot holds owned references (the modules take and drop them) and is matched by identity,
 * so threads and free-threaded builds never share one. The storage class is the compiler's:
 * checked with GCC and Clang (__thread) and MSVC (__declspec(thread)); C11 _Thread_local
 * otherwise. Nothing here reads CPython's internals: the slot only stores PyObject pointers.
 * Checked against CPython 3.10, 3.11, 3.12, 3.13 and 3.13t (free-threaded): each thread sees
 * its own slot (tests/test_core_cpython.py). */
#ifndef DP_TLS_H
#define DP_TLS_H
#include <Python.h>

#if defined(_MSC_VER)
#  define DP_THREAD_LOCAL __declspec(thread)
#elif defined(__GNUC__) || defined(__clang__)
#  define DP_THREAD_LOCAL __thread
#else
#  define DP_THREAD_LOCAL _Thread_local
#endif

/* _http_c: what the After recorder's _begin learnt of a request. */
typedef struct {
    void *recorder;     /* compared, never dereferenced */
    PyObject *request;  /* the references below are owned */
    PyObject *kind;
    PyObject *match;
    PyObject *view;
} dp_http_slot;

/* One per thread. */
static DP_THREAD_LOCAL dp_http_slot dp_http_slot_tls;
static inline dp_http_slot *dp_http_slot_get(void) { return &dp_http_slot_tls; }
#endif
