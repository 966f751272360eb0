/* Thread-local slots of the compiled core: what one request left for the next call on the
 * same thread (the After recorder's request, kind and view; the features' owned state).
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

/* _features_c: the state this thread's outer middleware owns now. */
typedef struct {
    PyObject *request;
    PyObject *state;
} dp_features_last;

/* Each module that includes this header has its own slots (static): one per thread. */
static DP_THREAD_LOCAL dp_http_slot dp_http_slot_tls;
static DP_THREAD_LOCAL dp_features_last dp_features_last_tls;
static inline dp_http_slot *dp_http_slot_get(void) { return &dp_http_slot_tls; }
static inline dp_features_last *dp_features_last_get(void) { return &dp_features_last_tls; }
#endif
