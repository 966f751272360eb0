# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled cells: C counters and histograms, label families and the cache get() fast path.

The pure-Python twin is ``_cells_py.py``; keep both in step (same names, same
behaviour). Increments are plain C additions under the GIL (which Python threads
cannot interrupt) and atomic compare-and-swap loops on free-threaded builds, so
no increment ever takes a lock.
"""

import contextlib
import errno
import logging
import mmap
import os
import re
import struct
import threading
import time
import weakref

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New
from libc.string cimport memcpy
from prometheus_client.context_managers import ExceptionCounter, InprogressTracker, Timer

cdef extern from "dp_immortal.h":
    pass


cdef extern from *:
    """
    #include <stdint.h>
    #if defined(Py_GIL_DISABLED)
    /* Free-threaded builds: every write is an atomic compare-and-swap, and a cell that sees
       contention (a failed CAS) spreads its later writes over stripes. */
    #if defined(_MSC_VER)
    #include <intrin.h>
    #define DP_TLS __declspec(thread)
    static inline double dp_load(double *p) { return *(volatile double *)p; }
    static inline int dp_cas(double *p, double *old, double new_) {
        union { double d; __int64 i; } o, n;
        __int64 seen;
        o.d = *old;
        n.d = new_;
        seen = _InterlockedCompareExchange64((volatile __int64 *)p, n.i, o.i);
        if (seen == o.i) return 1;
        o.i = seen;
        *old = o.d;
        return 0;
    }
    static inline void *dp_load_ptr(void **pp) { return *(void *volatile *)pp; }
    static inline int dp_cas_ptr(void **pp, void *old, void *new_) {
        return _InterlockedCompareExchangePointer(pp, new_, old) == old;
    }
    static volatile long dp_threads_seen;
    static inline int dp_next_thread(void) { return (int)_InterlockedIncrement(&dp_threads_seen); }
    #else
    #define DP_TLS __thread
    static inline double dp_load(double *p) {
        double v;
        __atomic_load(p, &v, __ATOMIC_RELAXED);
        return v;
    }
    static inline int dp_cas(double *p, double *old, double new_) {
        return __atomic_compare_exchange(p, old, &new_, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    }
    static inline void *dp_load_ptr(void **pp) { return __atomic_load_n(pp, __ATOMIC_ACQUIRE); }
    static inline int dp_cas_ptr(void **pp, void *old, void *new_) {
        return __atomic_compare_exchange_n(pp, &old, new_, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static int dp_threads_seen;
    static inline int dp_next_thread(void) { return __atomic_add_fetch(&dp_threads_seen, 1, __ATOMIC_RELAXED); }
    #endif

    static inline void dp_add(double *p, double v) {
        double old = dp_load(p);
        while (!dp_cas(p, &old, old + v)) {}
    }

    /* Stripes: DP_NSTRIPES runs of `stride` doubles, each run starting on its own cache line,
       so that threads writing different stripes never share a line. A thread takes the next
       stripe in turn the first time it writes a striped cell (round robin over threads, so two
       hot threads never share a stripe while there are more stripes than threads). The cell's
       own pointer (_p, _sum_p) then holds the stripes' address with its low bit set; readers
       add the stripes to the cell's own value(s). Only cells of exactly the single-process
       types stripe (dp_counter_type, dp_histogram_type): a multiprocess cell's value must stay
       in its file slot. */
    #define DP_LINE 64
    static Py_ssize_t dp_nstripes = 4;  /* a power of two, set at import (dp_set_stripes) */
    static PyTypeObject *dp_counter_type, *dp_histogram_type;
    static DP_TLS int dp_my_slot;  /* 0: this thread has no stripe yet */

    static inline int dp_tagged(double *p) { return ((uintptr_t)p & 1) != 0; }
    static inline double *dp_untag(double *p) { return (double *)((uintptr_t)p - 1); }
    static inline double *dp_stripe(double *base, Py_ssize_t stride) {
        int s = dp_my_slot;
        if (s == 0) s = dp_my_slot = dp_next_thread();
        return base + ((s - 1) & (dp_nstripes - 1)) * stride;
    }
    static inline Py_ssize_t dp_hist_stride(Py_ssize_t n) { return (n + 1 + 7) & ~(Py_ssize_t)7; }

    static double *dp_stripes_new(Py_ssize_t stride) {
        /* The raw block's address sits just before the first stripe (freed by dp_stripes_free). */
        size_t size = (size_t)dp_nstripes * (size_t)stride * sizeof(double) + DP_LINE + sizeof(void *);
        char *raw = (char *)PyMem_RawCalloc(1, size);
        char *base;
        if (raw == NULL) return NULL;
        base = (char *)(((uintptr_t)raw + sizeof(void *) + DP_LINE - 1) & ~(uintptr_t)(DP_LINE - 1));
        ((void **)base)[-1] = raw;
        return (double *)base;
    }
    static void dp_stripes_free(double *p) {
        if (dp_tagged(p)) PyMem_RawFree(((void **)dp_untag(p))[-1]);
    }
    /* Publish stripes in *pp (which held `own`); the stripes in place, or NULL (no memory). */
    static double *dp_stripes_install(double **pp, double *own, Py_ssize_t stride) {
        double *s = dp_stripes_new(stride), *p;
        if (s != NULL && dp_cas_ptr((void **)pp, own, (char *)s + 1)) return s;
        if (s != NULL) PyMem_RawFree(((void **)s)[-1]);
        p = (double *)dp_load_ptr((void **)pp);
        return dp_tagged(p) ? dp_untag(p) : NULL;
    }

    /* A striped child is made immortal on 3.13t (dp_immortal.h says why). */
    #define dp_share dp_make_shared
    static void dp_counter_contended(double **pp, double *p, double *own, PyObject *cell, double v) {
        double *s;
        if (p == own && Py_TYPE(cell) == dp_counter_type && (s = dp_stripes_install(pp, own, 8)) != NULL) {
            dp_share(cell);
            dp_add(dp_stripe(s, 8), v);
            return;
        }
        dp_add(p, v);
    }
    static inline void dp_counter_add(double **pp, double *own, PyObject *cell, double v) {
        double *p = (double *)dp_load_ptr((void **)pp), old;
        if (dp_tagged(p)) {
            dp_add(dp_stripe(dp_untag(p), 8), v);
            return;
        }
        old = dp_load(p);
        if (!dp_cas(p, &old, old + v)) dp_counter_contended(pp, p, own, cell, v);
    }
    static double dp_counter_read(double *p, double *own) {
        double acc;
        Py_ssize_t i;
        if (!dp_tagged(p)) return dp_load(p);
        acc = dp_load(own);
        for (i = 0; i < dp_nstripes; i++) acc += dp_load(dp_untag(p) + i * 8);
        return acc;
    }

    /* A histogram's stripe: its sum, then one count per bucket. `lo` < 0: NaN, sum only. */
    static inline void dp_stripe_observe(double *s, Py_ssize_t lo, double v) {
        dp_add(s, v);
        if (lo >= 0) dp_add(s + 1 + lo, 1.0);
    }
    static void dp_hist_contended(double **pp, double *p, double *own, double *counts, Py_ssize_t n,
                                  PyObject *cell, Py_ssize_t lo, double v) {
        double *s;
        Py_ssize_t stride = dp_hist_stride(n);
        if (p == own && Py_TYPE(cell) == dp_histogram_type && (s = dp_stripes_install(pp, own, stride)) != NULL) {
            dp_share(cell);
            dp_stripe_observe(dp_stripe(s, stride), lo, v);
            return;
        }
        dp_add(p, v);
        if (lo >= 0) dp_add(counts + lo, 1.0);
    }
    static inline void dp_hist_add(double **pp, double *own, double *counts, Py_ssize_t n,
                                   PyObject *cell, Py_ssize_t lo, double v) {
        double *p = (double *)dp_load_ptr((void **)pp), old;
        if (dp_tagged(p)) {
            dp_stripe_observe(dp_stripe(dp_untag(p), dp_hist_stride(n)), lo, v);
            return;
        }
        old = dp_load(p);
        if (!dp_cas(p, &old, old + v)) {
            dp_hist_contended(pp, p, own, counts, n, cell, lo, v);
            return;
        }
        if (lo >= 0) dp_add(counts + lo, 1.0);
    }
    static double dp_hist_sum(double *p, double *own, Py_ssize_t n) {
        double acc;
        Py_ssize_t i, stride = dp_hist_stride(n);
        if (!dp_tagged(p)) return dp_load(p);
        acc = dp_load(own);
        for (i = 0; i < dp_nstripes; i++) acc += dp_load(dp_untag(p) + i * stride);
        return acc;
    }
    static double dp_hist_count(double *p, double *counts, Py_ssize_t n, Py_ssize_t b) {
        double acc = dp_load(counts + b);
        Py_ssize_t i, stride = dp_hist_stride(n);
        if (!dp_tagged(p)) return acc;
        for (i = 0; i < dp_nstripes; i++) acc += dp_load(dp_untag(p) + i * stride + 1 + b);
        return acc;
    }
    /* Stripe now, contention or not (tests use it to exercise the striped paths). */
    static int dp_counter_stripe(double **pp, double *own, PyObject *cell) {
        if (dp_tagged(*pp)) return 1;
        if (*pp == own && Py_TYPE(cell) == dp_counter_type && dp_stripes_install(pp, own, 8) != NULL) {
            dp_share(cell);
            return 1;
        }
        return 0;
    }
    static int dp_hist_stripe(double **pp, double *own, Py_ssize_t n, PyObject *cell) {
        if (dp_tagged(*pp)) return 1;
        if (*pp == own && Py_TYPE(cell) == dp_histogram_type && dp_stripes_install(pp, own, dp_hist_stride(n)) != NULL) {
            dp_share(cell);
            return 1;
        }
        return 0;
    }
    static void dp_set_stripes(Py_ssize_t cpus) {
        Py_ssize_t n = 4;
        while (n < 2 * cpus && n < 32) n <<= 1;
        dp_nstripes = n;
    }
    static inline Py_ssize_t dp_stripe_count(void) { return dp_nstripes; }
    static inline int dp_is_striped(double *p) { return dp_tagged(p); }
    #else
    /* With the GIL held for the whole call no other Python thread can interleave: plain
       additions, and no cell ever stripes. */
    static PyTypeObject *dp_counter_type, *dp_histogram_type;
    static inline void dp_add(double *p, double v) { *p += v; }
    static inline void dp_counter_add(double **pp, double *own, PyObject *cell, double v) { **pp += v; }
    static inline double dp_counter_read(double *p, double *own) { return *p; }
    static inline void dp_hist_add(double **pp, double *own, double *counts, Py_ssize_t n,
                                   PyObject *cell, Py_ssize_t lo, double v) {
        **pp += v;
        if (lo >= 0) counts[lo] += 1.0;
    }
    static inline double dp_hist_sum(double *p, double *own, Py_ssize_t n) { return *p; }
    static inline double dp_hist_count(double *p, double *counts, Py_ssize_t n, Py_ssize_t b) { return counts[b]; }
    static inline void dp_stripes_free(double *p) {}
    static inline void dp_set_stripes(Py_ssize_t cpus) {}
    static inline Py_ssize_t dp_stripe_count(void) { return 0; }
    static inline int dp_is_striped(double *p) { return 0; }
    static inline int dp_counter_stripe(double **pp, double *own, PyObject *cell) { return 0; }
    static inline int dp_hist_stripe(double **pp, double *own, Py_ssize_t n, PyObject *cell) { return 0; }
    #endif
    """
    void dp_add(double *p, double v) nogil
    void dp_counter_add(double **pp, double *own, object cell, double v) noexcept
    double dp_counter_read(double *p, double *own) noexcept
    void dp_hist_add(double **pp, double *own, double *counts, Py_ssize_t n, object cell,
                     Py_ssize_t lo, double v) noexcept
    double dp_hist_sum(double *p, double *own, Py_ssize_t n) noexcept
    double dp_hist_count(double *p, double *counts, Py_ssize_t n, Py_ssize_t b) noexcept
    void dp_stripes_free(double *p) noexcept
    void dp_set_stripes(Py_ssize_t cpus) noexcept
    Py_ssize_t dp_stripe_count() noexcept
    bint dp_is_striped(double *p) noexcept
    bint dp_counter_stripe(double **pp, double *own, object cell) noexcept
    bint dp_hist_stripe(double **pp, double *own, Py_ssize_t n, object cell) noexcept
    PyTypeObject *dp_counter_type
    PyTypeObject *dp_histogram_type

cdef extern from *:
    """
    /* Publish a new entry's bytes before the header that makes readers see it. */
    #if defined(__GNUC__) || defined(__clang__)
    static inline void dp_store_used(char *base, int used) {
        __atomic_store_n((int *)base, used, __ATOMIC_RELEASE);
    }
    #else
    static inline void dp_store_used(char *base, int used) { *(volatile int *)base = used; }
    #endif
    """
    void dp_store_used(char *base, int used) nogil

cdef extern from *:
    """
    /* Set in a forked child by a pthread_atfork() handler, which runs on every fork() (Python's
       os.fork, uWSGI's workers, multiprocessing), also where Python's own fork hooks do not run.
       A write that finds it set moves this process' multiprocess cells off the parent's files
       first (``_forked``): one load and one branch per write, no getpid(). */
    #if defined(_WIN32)
    static int dp_forked = 0;
    static int dp_watch_forks(void) { return -1; }
    #else
    #include <pthread.h>
    static volatile int dp_forked = 0;
    static void dp_on_fork_child(void) { dp_forked = 1; }
    static int dp_watch_forks(void) { return pthread_atfork(NULL, NULL, dp_on_fork_child); }
    #endif
    static inline void dp_fork_seen(void) { dp_forked = 0; }
    """
    int dp_forked
    int dp_watch_forks()
    void dp_fork_seen()

cdef extern from *:
    """
    /* d[key] as a new reference, or a new reference to None when absent. dict.get compiles
       to a borrowed lookup then an incref: on a free-threaded build a concurrent remove() can
       free the value in between; PyDict_GetItemRef (3.13+) takes the reference atomically. */
    static PyObject *dp_dict_get(PyObject *d, PyObject *key) {
    #if PY_VERSION_HEX >= 0x030D0000
        PyObject *v;
        int found = PyDict_GetItemRef(d, key, &v);
        if (found < 0) return NULL;
        if (found == 0) { Py_INCREF(Py_None); return Py_None; }
        return v;
    #else
        PyObject *v = PyDict_GetItemWithError(d, key);
        if (v == NULL) { if (PyErr_Occurred()) return NULL; v = Py_None; }
        Py_INCREF(v);
        return v;
    #endif
    }
    """
    object dp_dict_get(dict d, object key)

__all__ = [
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MultiProcessStore",
]

cdef double _INF = float("inf")
cdef object _time = time.time
# OpenMetrics' label names (exemplar labels follow the rules of metric labels).
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


# The cells' and families' methods are method descriptors (binding=False), not Cython's
# function objects: on a free-threaded 3.13 a descriptor is immortal once a second thread has
# started, and ``child.inc`` is a builtin method that calls the C function with its cell, while
# a Cython function object in the type's dict has a reference count that every call from every
# thread writes (``child.inc()`` takes a new reference to it, a bound ``child.inc`` takes one to
# it and to the child): two threads counting into two distinct children then trade that line,
# 0.61x one thread's throughput (issue 28, docs/free-threaded.md).
@cython.binding(False)
cdef class Counter:
    """A monotonically increasing float.

    The value lives at ``_p``: the cell's own ``_v``, or, in multiprocess mode,
    a slot of this process' metrics file (see ``MultiProcessStore``). A NULL
    ``_p`` is a multiprocess cell this process has not written yet (a forked
    child's): the first write gives it a slot (``_attach``), so a child that
    never counts never creates a file. On a free-threaded build a contended
    single-process cell stripes: ``_p`` then holds its stripes (low bit set),
    and the value is ``_v`` plus the stripes (``dp_counter_read``). This class
    and ``Histogram`` are the only code that knows the layout; the other
    modules write through ``C_API``.
    """

    cdef double _v
    cdef double *_p
    cdef readonly double created

    def __cinit__(self):
        self._v = 0.0
        self._p = &self._v
        self.created = time.time()

    def inc(self, double amount=1.0, exemplar=None):
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        if dp_forked:
            _forked()
        if self._p == NULL:
            self._attach()
        dp_counter_add(&self._p, &self._v, self, amount)

    def get(self):
        if dp_forked:
            _forked()
        if self._p == NULL:
            return self._v
        return dp_counter_read(self._p, &self._v)

    def __dealloc__(self):
        dp_stripes_free(self._p)  # (a no-op unless the cell striped)

    def _striped(self):
        """True once contention made this cell stripe (free-threaded builds only)."""
        return dp_is_striped(self._p)

    def _stripe(self):
        """Stripe now, as contention would (tests); True if the cell is striped."""
        return dp_counter_stripe(&self._p, &self._v, self)

    cdef void _attach(self) noexcept:
        self._p = &self._v

    cdef void _detach(self) noexcept:
        if self._p != NULL:
            self._v = self._p[0]
        self._p = &self._v

    def count_exceptions(self, exception=Exception):
        return ExceptionCounter(self, exception)

    @property
    def _value(self):
        # prometheus_client children expose their value as ``child._value.get()``;
        # users' tests rely on it.
        return self


cdef inline void _add(Counter c, double amount) noexcept:
    if dp_forked:
        _forked()
    if c._p == NULL:
        c._attach()
    dp_counter_add(&c._p, &c._v, c, amount)


@cython.binding(False)
cdef class Gauge:
    """A float that can go up and down."""

    cdef double _v
    cdef readonly double created

    def __cinit__(self):
        self._v = 0.0
        self.created = time.time()

    def inc(self, double amount=1.0):
        dp_add(&self._v, amount)

    def dec(self, double amount=1.0):
        dp_add(&self._v, -amount)

    def set(self, double value):
        self._v = value

    def set_to_current_time(self):
        self._v = time.time()

    def get(self):
        return self._v

    def track_inprogress(self):
        return InprogressTracker(self)

    def time(self):
        return Timer(self, "set")

    @property
    def _value(self):
        return self


cdef class _Bounds:
    """Upper bounds shared by every histogram that has them (one C array, not one per child)."""

    cdef double *values
    cdef Py_ssize_t n
    cdef readonly tuple bounds

    def __cinit__(self, tuple bounds):
        cdef Py_ssize_t i
        self.bounds = bounds
        self.n = len(bounds)
        self.values = <double *> PyMem_Malloc(self.n * sizeof(double))
        if self.values == NULL:
            raise MemoryError()
        for i in range(self.n):
            self.values[i] = bounds[i]

    def __dealloc__(self):
        PyMem_Free(self.values)


_SHARED_BOUNDS = {}


cdef _Bounds _shared_bounds(bounds):
    if type(bounds) is _Bounds:
        return <_Bounds> bounds
    checked = _check_bounds(bounds)
    b = _SHARED_BOUNDS.get(checked)
    if b is None:
        b = _SHARED_BOUNDS.setdefault(checked, _Bounds(checked))
    return <_Bounds> b


_RARE_LOCK = threading.Lock()


cdef class _Rare:
    """A histogram's rarely used parts, made on first use (most cells never need one)."""

    cdef object capture  # None, or exemplar labels (a dict or None) for the current observation
    cdef list ex  # None until the first exemplar: one (labels, value, timestamp) or None per bucket
    cdef object native  # None, or a _native_c.NativeHistogram counting the same observations
    cdef double **slots  # NULL, or where each bucket's count lives in the multiprocess file

    def __dealloc__(self):
        PyMem_Free(self.slots)


@cython.binding(False)
cdef class Histogram:
    """Fixed upper bounds, one count per bucket and a running sum.

    Single-process: the counts are ``_counts``.
    Multiprocess: each bucket's count lives in a file slot, ``_rare.slots[i]``,
    and the sum at ``_sum_p``; a NULL ``_sum_p`` is a cell this process has not
    written yet (see Counter). On a free-threaded build a contended
    single-process cell stripes as a Counter does: ``_sum_p`` then holds
    stripes of (sum, one count per bucket), added to ``_sum`` and ``_counts``
    when read. What a plain observe never touches (exemplar capture and
    exemplars, the native part, the multiprocess slots) sits in ``_rare``,
    None until first needed: 88 bytes and the counts a child.
    """

    cdef _Bounds _b  # the bounds (``values``) and their number (``n``), shared
    cdef double *_counts
    cdef double _sum
    cdef double *_sum_p
    cdef readonly double created
    cdef _Rare _rare

    def __cinit__(self, bounds):
        cdef Py_ssize_t i, n
        self._b = _shared_bounds(bounds)
        n = self._b.n
        self._counts = <double *> PyMem_Malloc(n * sizeof(double))
        if self._counts == NULL:
            raise MemoryError()
        for i in range(n):
            self._counts[i] = 0.0
        self._sum = 0.0
        self._sum_p = &self._sum
        self.created = time.time()

    def __dealloc__(self):
        PyMem_Free(self._counts)
        dp_stripes_free(self._sum_p)

    cdef _Rare _rare_part(self):
        # Made once (under a lock: two threads may ask at once) and never replaced, so a
        # lock-free observe never meets a freed one.
        if self._rare is None:
            with _RARE_LOCK:
                if self._rare is None:
                    self._rare = _Rare()
        return self._rare

    def _striped(self):
        """True once contention made this cell stripe (free-threaded builds only)."""
        return dp_is_striped(self._sum_p)

    def _stripe(self):
        """Stripe now, as contention would (tests); True if the cell is striped."""
        return dp_hist_stripe(&self._sum_p, &self._sum, self._b.n, self)

    @property
    def bounds(self):
        return self._b.bounds

    cdef void _attach(self) noexcept:
        self._sum_p = &self._sum

    cdef void _detach(self) noexcept:
        cdef Py_ssize_t i
        cdef double **slots = NULL if self._rare is None else self._rare.slots
        if slots != NULL:
            for i in range(self._b.n):
                self._counts[i] = slots[i][0]
            self._rare.slots = NULL
            PyMem_Free(slots)
        if self._sum_p != NULL:
            self._sum = self._sum_p[0]
        self._sum_p = &self._sum

    cdef void _reset(self) noexcept:
        # A forked child: the parent's counts stay the parent's; ours start at 0, unwritten.
        cdef Py_ssize_t i
        if self._rare is not None:
            PyMem_Free(self._rare.slots)
            self._rare.slots = NULL
        for i in range(self._b.n):
            self._counts[i] = 0.0
        self._sum = 0.0
        self._sum_p = NULL

    cdef inline void _observe(self, double amount) noexcept:
        # First bound >= amount, by bisection. The last bound is +Inf, so every
        # number finds a bucket; NaN (all comparisons false) finds none, as in
        # prometheus_client.
        # The bounds are read through ``self`` into C locals, never into a Python local: that
        # would take a reference to the bounds object all the family's children share, and
        # on a free-threaded build two threads changing one reference count fight over its
        # cache line (two threads on one striped child: 1.41x one thread's rate with it).
        cdef const double *values = self._b.values
        cdef Py_ssize_t n = self._b.n, lo = 0, hi = n - 1, mid
        if dp_forked:
            _forked()
        if self._sum_p == NULL:
            self._attach()
        if amount != amount:
            if self._rare is None or self._rare.slots == NULL:
                dp_hist_add(&self._sum_p, &self._sum, self._counts, n, self, -1, amount)
            else:
                dp_add(self._sum_p, amount)
            return
        while lo < hi:
            mid = (lo + hi) >> 1
            if values[mid] < amount:
                lo = mid + 1
            else:
                hi = mid
        if self._rare is None:  # the one branch exemplars, native parts and multiprocess cost when off
            dp_hist_add(&self._sum_p, &self._sum, self._counts, n, self, lo, amount)
        elif self._rare.slots != NULL and self._rare.native is None and self._rare.capture is None:
            # A multiprocess cell, the common case there: its file slots, without a call.
            dp_add(self._sum_p, amount)
            dp_add(self._rare.slots[lo], 1.0)
        else:
            self._observe_rare(lo, amount)

    cdef void _observe_rare(self, Py_ssize_t lo, double amount) noexcept:
        # ``self._rare`` is never replaced once made: read through ``self`` (no reference taken,
        # for the reason in ``_observe``: threads sharing this child would share that count).
        cdef double **slots = self._rare.slots
        if slots == NULL:
            dp_hist_add(&self._sum_p, &self._sum, self._counts, self._b.n, self, lo, amount)
        else:
            dp_add(self._sum_p, amount)
            dp_add(slots[lo], 1.0)
        if self._rare.native is not None:
            _native_observe(self._rare.native, amount)
        if self._rare.capture is not None:
            self._captured(lo, amount)

    cdef void _captured(self, Py_ssize_t i, double amount) noexcept:
        # Instrumentation never breaks the app: a failing capture records nothing.
        try:
            labels = self._rare.capture()
            if labels is not None:
                self._keep(i, labels, amount)
        except BaseException:
            pass

    cdef void _keep(self, Py_ssize_t i, dict labels, double amount) except *:
        # One exemplar per bucket, the latest wins (OpenMetrics; prometheus_client does the same).
        rare = self._rare_part()
        ex = rare.ex
        if ex is None:
            ex = rare.ex = [None] * self._b.n
        ex[i] = (labels, amount, _time())

    def observe(self, double amount, exemplar=None):
        """Count ``amount``; an ``exemplar`` (label dict) marks its bucket, as in prometheus_client."""
        # Kept this small so the C compiler inlines it into the method wrapper, as before exemplars.
        if exemplar is None:
            self._observe(amount)
        else:
            self._observe_with(amount, exemplar)

    cdef void _observe_with(self, double amount, exemplar) except *:
        cdef Py_ssize_t lo = 0, hi = self._b.n - 1, mid
        labels = _check_exemplar(exemplar)
        self._observe(amount)
        if amount != amount:
            return
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._b.values[mid] < amount:
                lo = mid + 1
            else:
                hi = mid
        self._keep(lo, labels, amount)

    def set_exemplar_capture(self, capture):
        """``capture()`` -> exemplar labels or None, called on every observation; None: stop capturing.

        Stopping also forgets the exemplars kept so far.
        """
        if capture is None:
            if self._rare is not None:
                self._rare.capture = None
                self._rare.ex = None
        elif not callable(capture):
            raise TypeError("capture must be callable or None")
        else:
            self._rare_part().capture = capture

    def exemplars(self):
        """None, or per bucket: None or the latest ``(labels, value, timestamp)`` observed into it."""
        ex = None if self._rare is None else self._rare.ex
        return None if ex is None else list(ex)

    def set_native(self, native):
        """Count every observation in ``native`` too (a ``_native.NativeHistogram``), or stop (None)."""
        global _native_observe, _NativeType
        if native is None:
            if self._rare is not None:
                self._rare.native = None
            return
        if _native_observe == NULL:
            from . import _native_c
            _NativeType = _native_c.NativeHistogram
            _native_observe = (<dp_native_api *> PyCapsule_GetPointer(
                _native_c.C_API, "django_prometheus._core._native_c.C_API")).observe
        if type(native) is not _NativeType:  # the C call below trusts the type
            raise TypeError("native must be a compiled NativeHistogram or None")
        self._rare_part().native = native

    @property
    def native(self):
        """None, or the native histogram counting the same observations."""
        return None if self._rare is None else self._rare.native

    def time(self):
        return Timer(self, "observe")

    @property
    def sum(self):
        if dp_forked:
            _forked()
        if self._sum_p == NULL:
            return self._sum
        return dp_hist_sum(self._sum_p, &self._sum, self._b.n)

    cdef inline double _count_at(self, Py_ssize_t i) noexcept:
        if dp_forked:
            _forked()
        if self._rare is None or self._rare.slots == NULL:
            return dp_hist_count(self._sum_p, self._counts, self._b.n, i)
        return self._rare.slots[i][0]

    @property
    def count(self):
        cdef double acc = 0.0
        cdef Py_ssize_t i
        for i in range(self._b.n):
            acc += self._count_at(i)
        return acc

    def buckets(self):
        """Cumulative bucket counts, one per bound (what ``_bucket`` samples show)."""
        cdef double acc = 0.0
        cdef Py_ssize_t i
        out = [None] * self._b.n
        for i in range(self._b.n):
            acc += self._count_at(i)
            out[i] = acc
        return out


def _check_exemplar(exemplar):
    """A copy of an exemplar's labels, or ValueError where prometheus_client raises one."""
    labels = dict(exemplar)
    runes = 0
    for k, v in labels.items():
        if type(k) is not str or _LABEL_NAME.fullmatch(k) is None or k.startswith("__"):
            raise ValueError(f"Invalid label metric name: {k!r}")
        if type(v) is not str:
            raise ValueError(f"Exemplar label value must be a string: {v!r}")
        runes += len(k) + len(v)
    if runes > 128:
        raise ValueError(f"Exemplar labels have {runes} UTF-8 characters, exceeding the limit of 128")
    return labels


def _check_bounds(bounds):
    b = [float(x) for x in bounds]
    if b != sorted(b):
        raise ValueError("Buckets not in sorted order")
    if not b or b[len(b) - 1] != _INF:  # (wraparound is off in this module)
        b.append(_INF)
    if len(b) < 2:
        raise ValueError("Must have at least two buckets")
    return tuple(b)


cdef extern from *:
    """
    /* A compiled Family's children: its own open-addressed table, not a dict keyed by tuples.

       Entries (the cell, then the label values: `width` words) sit in insertion order in
       chunks that never move while the table lives: one chunk of `cap` entries in a small
       table, chunks of DP_FAM_CHUNK entries (allocated as they fill) in a big one. The index
       (`mask + 1` ints, a power of two, at most 2/3 full) holds entry numbers, -1 where empty,
       found by linear probing from the values' hash (each value's own hash, mixed: strings
       cache theirs). A removed entry keeps its index slot and has a NULL cell until the next
       rebuild, which drops it and keeps the others' order; a table whose entries are full is
       rebuilt at twice the size (a big table without removed entries hands its chunks over:
       nothing is copied but the chunk pointers), so a child costs its `width` words, its share
       of the index and, in the last chunk, what is not used yet.

       Readers take no lock: the table pointer is published with a release store and read with
       an acquire load, and a new entry is written before the release store of its index slot.
       Writers (create, remove, clear) hold the family's lock. With the GIL, a replaced table is
       freed at once and a removed child's references dropped at once (a reader never runs
       Python code in between, but for a label value that is not a str, whose == may: it then
       looks again if the table changed meanwhile). On free-threaded builds a reader may still
       hold any table, and any cell it read: replaced tables are kept until the family dies
       (growth by doubling: together smaller than the live one), and removed children's cells
       and label values go to the family's graveyard list, also kept until the family dies. */
    #include <stddef.h>
    #include <string.h>
    #include <stdint.h>
    #define DP_FAM_CHUNK_SHIFT 6
    #define DP_FAM_CHUNK (1 << DP_FAM_CHUNK_SHIFT)
    #define DP_FAM_ONE_CHUNK 30  /* the shift of a small table's single chunk */
    #define DP_FAM_MAX ((Py_ssize_t)1 << 30)  /* index slots (entry numbers are ints) */

    typedef struct dp_ctab {
        struct dp_ctab *older;  /* the next retired table (free-threaded builds) */
        Py_ssize_t mask;        /* index slots - 1 */
        Py_ssize_t cap;         /* entries the table takes before it is rebuilt */
        Py_ssize_t used;        /* entries appended, removed ones included */
        Py_ssize_t live;        /* entries not removed */
        Py_ssize_t width;       /* words per entry: the cell, then the label values */
        int shift;              /* entry k is in chunk k >> shift */
        int owns_chunks;        /* 0: a retired table whose chunks its successor took over */
        PyObject ***chunks;     /* in the same block, after the index */
        int index[1];           /* mask + 1 slots: -1 empty, else an entry's number */
    } dp_ctab;

    typedef struct {
        dp_ctab *tab;      /* NULL: no child yet */
        dp_ctab *retired;  /* free-threaded builds: tables replaced, freed with the family */
    } dp_fam;

    #if defined(Py_GIL_DISABLED)
    #define DP_TAB_LOAD(pp) ((dp_ctab *)_Py_atomic_load_ptr_acquire((const void *)(pp)))
    #define DP_TAB_STORE(pp, t) _Py_atomic_store_ptr_release((void *)(pp), (void *)(t))
    #define DP_IDX_LOAD(p) _Py_atomic_load_int_acquire(p)
    #define DP_IDX_STORE(p, v) _Py_atomic_store_int_release((p), (v))
    #define DP_CELL_LOAD(p) ((PyObject *)_Py_atomic_load_ptr_relaxed((const void *)(p)))
    #define DP_CELL_STORE(p, v) _Py_atomic_store_ptr_relaxed((void *)(p), (void *)(v))
    #define DP_LIVE_LOAD(p) _Py_atomic_load_ssize_relaxed(p)
    #define DP_LIVE_STORE(p, v) _Py_atomic_store_ssize_relaxed((p), (v))
    #define DP_VERSION_LOAD(p) _Py_atomic_load_ssize_relaxed(p)
    #else
    #define DP_TAB_LOAD(pp) (*(pp))
    #define DP_TAB_STORE(pp, t) (*(pp) = (t))
    #define DP_IDX_LOAD(p) (*(p))
    #define DP_IDX_STORE(p, v) (*(p) = (v))
    #define DP_CELL_LOAD(p) (*(p))
    #define DP_CELL_STORE(p, v) (*(p) = (v))
    #define DP_LIVE_LOAD(p) (*(p))
    #define DP_LIVE_STORE(p, v) (*(p) = (v))
    #define DP_VERSION_LOAD(p) (*(const volatile Py_ssize_t *)(p))
    #endif

    static inline PyObject **dp_tab_entry(dp_ctab *t, Py_ssize_t k) {
        return t->chunks[k >> t->shift] + (k & (((Py_ssize_t)1 << t->shift) - 1)) * t->width;
    }
    static inline Py_ssize_t dp_tab_nchunks(dp_ctab *t) {
        return t->shift == DP_FAM_ONE_CHUNK ? 1 : (t->cap + DP_FAM_CHUNK - 1) >> DP_FAM_CHUNK_SHIFT;
    }

    /* The values' hash (not the tuple's: a table is rebuilt from the stored values alone). */
    static inline int dp_vals_hash(PyObject *const *v, Py_ssize_t n, size_t *out) {
        uint64_t acc = 0x27D4EB2F165667C5ULL;
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
            Py_hash_t x = PyObject_Hash(v[i]);
            if (x == -1) return -1;
            acc += (uint64_t)x * 0xC2B2AE3D27D4EB4FULL;
            acc = (acc << 31) | (acc >> 33);
            acc *= 0x9E3779B185EBCA87ULL;
        }
        acc ^= acc >> 32;
        *out = (size_t)acc;
        return 0;
    }

    /* 1 equal, 0 not, 2 Python's == must say (not two exact str). */
    static inline int dp_val_eq(PyObject *a, PyObject *b) {
        Py_ssize_t n;
        int kind;
        if (a == b) return 1;
        if (!PyUnicode_CheckExact(a) || !PyUnicode_CheckExact(b)) return 2;
    #if PY_VERSION_HEX < 0x030C0000
        if (!PyUnicode_IS_READY(a) || !PyUnicode_IS_READY(b)) return 2;
    #endif
        n = PyUnicode_GET_LENGTH(a);
        kind = PyUnicode_KIND(a);
        return n == PyUnicode_GET_LENGTH(b) && kind == (int)PyUnicode_KIND(b)
            && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * (size_t)kind) == 0;
    }

    /* Where `vals` is: *found its entry's number, -1 if absent; *slot its index slot. 0, or -1: an
       error; 1: Python code ran and the table changed (look again). */
    static int dp_tab_lookup(dp_fam *f, dp_ctab *t, const Py_ssize_t *version, PyObject *const *vals,
                             Py_ssize_t n, size_t h, Py_ssize_t *found, PyObject **cell_out) {
        Py_ssize_t i = (Py_ssize_t)(h & (size_t)t->mask), j, v0;
        for (;;) {
            int k = DP_IDX_LOAD(&t->index[i]);
            PyObject **e, *cell, *a;
            int r;
            if (k < 0) {
                *found = -1;
                return 0;
            }
            e = dp_tab_entry(t, k);
            cell = DP_CELL_LOAD(e);
            if (cell != NULL) {
                for (j = 0; j < n; j++) {
                    r = dp_val_eq(e[1 + j], vals[j]);
                    if (r == 2) {
                        /* May run Python code, which may let another thread change the table. */
                        v0 = DP_VERSION_LOAD(version);
                        a = e[1 + j];
                        Py_INCREF(a);
                        r = PyObject_RichCompareBool(a, vals[j], Py_EQ);
                        Py_DECREF(a);
                        if (r < 0) return -1;
                        if (DP_TAB_LOAD(&f->tab) != t || DP_VERSION_LOAD(version) != v0) return 1;
                    }
                    if (!r) break;
                }
                if (j == n) {
                    *found = k;
                    *cell_out = cell;
                    return 0;
                }
            }
            i = (i + 1) & t->mask;
        }
    }

    /* The cell of `values` (a new reference), None if the family has none; NULL: an error. */
    static PyObject *dp_fam_get(dp_fam *f, const Py_ssize_t *version, PyObject *values) {
        Py_ssize_t n = PyTuple_GET_SIZE(values), k;
        PyObject *const *vals = &PyTuple_GET_ITEM(values, 0), *cell = NULL;
        dp_ctab *t;
        size_t h;
        int r;
        if (dp_vals_hash(vals, n, &h) < 0) return NULL;
        do {
            t = DP_TAB_LOAD(&f->tab);
            if (t == NULL || t->width != n + 1) Py_RETURN_NONE;
            r = dp_tab_lookup(f, t, version, vals, n, h, &k, &cell);
            if (r < 0) return NULL;
        } while (r);
        if (k < 0) Py_RETURN_NONE;
        Py_INCREF(cell);
        return cell;
    }

    static void dp_tab_free(dp_ctab *t) {
        Py_ssize_t c, nc = dp_tab_nchunks(t);
        if (t->owns_chunks)
            for (c = 0; c < nc; c++) PyMem_Free(t->chunks[c]);
        PyMem_Free(t);
    }

    static dp_ctab *dp_tab_new(Py_ssize_t nidx, Py_ssize_t width) {
        Py_ssize_t cap = nidx * 2 / 3, nc;
        int shift = cap <= DP_FAM_CHUNK ? DP_FAM_ONE_CHUNK : DP_FAM_CHUNK_SHIFT;
        size_t head = (offsetof(dp_ctab, index) + (size_t)nidx * sizeof(int) + 7) & ~(size_t)7;
        dp_ctab *t;
        nc = shift == DP_FAM_ONE_CHUNK ? 1 : (cap + DP_FAM_CHUNK - 1) >> DP_FAM_CHUNK_SHIFT;
        t = (dp_ctab *)PyMem_Malloc(head + (size_t)nc * sizeof(PyObject **));
        if (t == NULL) return (dp_ctab *)PyErr_NoMemory();
        t->older = NULL;
        t->mask = nidx - 1;
        t->cap = cap;
        t->used = 0;
        t->live = 0;
        t->width = width;
        t->shift = shift;
        t->owns_chunks = 1;
        t->chunks = (PyObject ***)((char *)t + head);
        memset(t->index, 0xff, (size_t)nidx * sizeof(int));
        memset(t->chunks, 0, (size_t)nc * sizeof(PyObject **));
        if (shift == DP_FAM_ONE_CHUNK) {
            t->chunks[0] = (PyObject **)PyMem_Malloc((size_t)cap * (size_t)width * sizeof(PyObject *));
            if (t->chunks[0] == NULL) {
                PyMem_Free(t);
                return (dp_ctab *)PyErr_NoMemory();
            }
        }
        return t;
    }

    /* Room for entry number t->used (its chunk allocated). */
    static int dp_tab_room(dp_ctab *t) {
        Py_ssize_t c = t->used >> t->shift;
        if (t->chunks[c] == NULL) {
            t->chunks[c] = (PyObject **)PyMem_Malloc((size_t)DP_FAM_CHUNK * (size_t)t->width * sizeof(PyObject *));
            if (t->chunks[c] == NULL) {
                PyErr_NoMemory();
                return -1;
            }
        }
        return 0;
    }

    static void dp_tab_place(dp_ctab *t, size_t h, int k) {
        Py_ssize_t i = (Py_ssize_t)(h & (size_t)t->mask);
        while (t->index[i] >= 0) i = (i + 1) & t->mask;
        DP_IDX_STORE(&t->index[i], k);
    }

    static void dp_fam_retire(dp_fam *f, dp_ctab *old) {
    #if defined(Py_GIL_DISABLED)
        old->older = f->retired;
        f->retired = old;
    #else
        dp_tab_free(old);
    #endif
    }

    /* Replace the table by one with room for its live entries and more (under the lock). */
    static int dp_fam_rebuild(dp_fam *f, Py_ssize_t width) {
        dp_ctab *old = f->tab, *t;
        Py_ssize_t live = old ? old->live : 0, nidx = 8, k, c;
        PyObject **e;
        size_t h;
        while (nidx * 2 / 3 < live + live / 4 + 1) {
            nidx <<= 1;
            if (nidx > DP_FAM_MAX) {
                PyErr_SetString(PyExc_OverflowError, "too many children in one family");
                return -1;
            }
        }
        t = dp_tab_new(nidx, width);
        if (t == NULL) return -1;
        if (old != NULL && old->live == old->used && old->shift == DP_FAM_CHUNK_SHIFT && t->shift == DP_FAM_CHUNK_SHIFT) {
            for (c = 0; c < dp_tab_nchunks(old); c++) t->chunks[c] = old->chunks[c];
            t->used = old->used;
        } else if (old != NULL) {
            for (k = 0; k < old->used; k++) {
                e = dp_tab_entry(old, k);
                if (e[0] == NULL) continue;
                if (dp_tab_room(t) < 0) {
                    dp_tab_free(t);
                    return -1;
                }
                memcpy(dp_tab_entry(t, t->used), e, (size_t)width * sizeof(PyObject *));
                t->used++;
            }
        }
        t->live = t->used;
        for (k = 0; k < t->used; k++) {
            e = dp_tab_entry(t, k);
            if (dp_vals_hash(e + 1, width - 1, &h) < 0) {
                /* Hashed before, when the child was made: only a pathological value fails now. */
                PyErr_Clear();
                h = 0;
            }
            dp_tab_place(t, h, (int)k);
        }
        DP_TAB_STORE(&f->tab, t);
        if (old != NULL) {
            if (t->chunks[0] == old->chunks[0]) old->owns_chunks = 0;
            dp_fam_retire(f, old);
        }
        return 0;
    }

    /* Whether a child with `n` label values goes in the table (its first child's count). */
    static int dp_fam_fits(dp_fam *f, Py_ssize_t n) {
        return f->tab == NULL || f->tab->width == n + 1;
    }

    /* Add `cell` for `values`, which the family has no child for (under the lock). */
    static int dp_fam_insert(dp_fam *f, PyObject *values, PyObject *cell) {
        Py_ssize_t n = PyTuple_GET_SIZE(values), j, k;
        PyObject *const *vals = &PyTuple_GET_ITEM(values, 0);
        PyObject **e;
        dp_ctab *t;
        size_t h;
        if (!dp_fam_fits(f, n)) {
            PyErr_SetString(PyExc_ValueError, "a child's label count is not the family table's");
            return -1;
        }
        if (dp_vals_hash(vals, n, &h) < 0) return -1;
        t = f->tab;
        if ((t == NULL || t->used == t->cap) && dp_fam_rebuild(f, n + 1) < 0) return -1;
        t = f->tab;
        if (dp_tab_room(t) < 0) return -1;
        k = t->used;
        e = dp_tab_entry(t, k);
        Py_INCREF(cell);
        e[0] = cell;
        for (j = 0; j < n; j++) {
            Py_INCREF(vals[j]);
            e[1 + j] = vals[j];
        }
        t->used = k + 1;
        DP_LIVE_STORE(&t->live, t->live + 1);
        dp_tab_place(t, h, (int)k);  /* published: readers see the entry from here on */
        return 0;
    }

    /* Let go of an entry's references: at once with the GIL, into the graveyard otherwise. */
    static void dp_entry_drop(PyObject **e, Py_ssize_t width, PyObject *graveyard) {
        Py_ssize_t j;
    #if defined(Py_GIL_DISABLED)
        for (j = 0; j < width; j++) {
            if (PyList_Append(graveyard, e[j]) < 0) {
                PyErr_Clear();  /* no memory: leave the rest referenced forever, never freed early */
                return;
            }
            Py_DECREF(e[j]);
        }
    #else
        (void)graveyard;
        for (j = 0; j < width; j++) Py_DECREF(e[j]);
    #endif
    }

    /* Remove the child of `values` (under the lock): 1 removed, 0 none, -1 an error. */
    static int dp_fam_remove(dp_fam *f, const Py_ssize_t *version, PyObject *values, PyObject *graveyard) {
        Py_ssize_t n = PyTuple_GET_SIZE(values), k;
        PyObject *const *vals = &PyTuple_GET_ITEM(values, 0), *cell = NULL, **e;
        PyObject *kept[16], **held = kept;
        dp_ctab *t = f->tab;
        size_t h;
        int r;
        if (t == NULL || t->width != n + 1) return 0;
        if (dp_vals_hash(vals, n, &h) < 0) return -1;
        do {
            t = f->tab;
            r = dp_tab_lookup(f, t, version, vals, n, h, &k, &cell);
            if (r < 0) return -1;
        } while (r);
        if (k < 0) return 0;
        e = dp_tab_entry(t, (int)k);
        DP_CELL_STORE(e, NULL);
        DP_LIVE_STORE(&t->live, t->live - 1);
        /* The references go once the entry is out (a value's __del__ may run Python code). */
        if (t->width > 16) {
            held = (PyObject **)PyMem_Malloc((size_t)t->width * sizeof(PyObject *));
            if (held == NULL) return 1;  /* no memory: keep them referenced forever */
        }
        held[0] = cell;
        memcpy(held + 1, e + 1, (size_t)n * sizeof(PyObject *));
        dp_entry_drop(held, t->width, graveyard);
        if (held != kept) PyMem_Free(held);
        return 1;
    }

    /* Empty the family (under the lock). */
    static void dp_fam_clear(dp_fam *f, PyObject *graveyard) {
        dp_ctab *t = f->tab;
        Py_ssize_t k;
        PyObject **e;
        if (t == NULL) return;
        DP_TAB_STORE(&f->tab, NULL);
        for (k = 0; k < t->used; k++) {
            e = dp_tab_entry(t, k);
            if (e[0] != NULL) dp_entry_drop(e, t->width, graveyard);
        }
        dp_fam_retire(f, t);
    }

    /* The family is dying: nothing can read it any more. */
    static void dp_fam_free(dp_fam *f) {
        dp_ctab *t = f->tab, *next;
        Py_ssize_t k, j;
        PyObject **e;
        f->tab = NULL;
        if (t != NULL) {
            for (k = 0; k < t->used; k++) {
                e = dp_tab_entry(t, k);
                if (e[0] != NULL)
                    for (j = 0; j < t->width; j++) Py_DECREF(e[j]);
            }
            dp_tab_free(t);
        }
        for (t = f->retired; t != NULL; t = next) {
            next = t->older;
            dp_tab_free(t);
        }
        f->retired = NULL;
    }

    static inline Py_ssize_t dp_fam_len(dp_fam *f) {
        dp_ctab *t = DP_TAB_LOAD(&f->tab);
        return t == NULL ? 0 : DP_LIVE_LOAD(&t->live);
    }

    /* (label values one child after another, cells), in insertion order (under the lock). */
    static PyObject *dp_fam_flat(dp_fam *f, Py_ssize_t *nlabels) {
        dp_ctab *t = f->tab;
        Py_ssize_t n = t == NULL ? 0 : t->width - 1, live = t == NULL ? 0 : t->live, k, j, c = 0;
        PyObject *flat, *cells, **e;
        *nlabels = n;
        flat = PyList_New(live * n);
        cells = PyList_New(live);
        if (flat == NULL || cells == NULL) {
            Py_XDECREF(flat);
            Py_XDECREF(cells);
            return NULL;
        }
        for (k = 0; t != NULL && k < t->used; k++) {
            e = dp_tab_entry(t, k);
            if (e[0] == NULL) continue;
            Py_INCREF(e[0]);
            PyList_SET_ITEM(cells, c, e[0]);
            for (j = 0; j < n; j++) {
                Py_INCREF(e[1 + j]);
                PyList_SET_ITEM(flat, c * n + j, e[1 + j]);
            }
            c++;
        }
        return Py_BuildValue("(NN)", flat, cells);
    }

    /* [(label-value tuple, cell)] or (tuples, cells) (pairs == 0), in insertion order (under the lock). */
    static PyObject *dp_fam_items(dp_fam *f, int pairs) {
        dp_ctab *t = f->tab;
        Py_ssize_t n = t == NULL ? 0 : t->width - 1, live = t == NULL ? 0 : t->live, k, j, c = 0;
        PyObject *keys = NULL, *cells = NULL, *key, *out, **e;
        out = PyList_New(live);
        if (out == NULL) return NULL;
        if (!pairs) {
            keys = out;
            cells = PyList_New(live);
            if (cells == NULL) {
                Py_DECREF(keys);
                return NULL;
            }
        }
        for (k = 0; t != NULL && k < t->used; k++) {
            e = dp_tab_entry(t, k);
            if (e[0] == NULL) continue;
            key = PyTuple_New(n);
            if (key == NULL) {
                Py_DECREF(out);
                Py_XDECREF(cells);
                return NULL;
            }
            for (j = 0; j < n; j++) {
                Py_INCREF(e[1 + j]);
                PyTuple_SET_ITEM(key, j, e[1 + j]);
            }
            Py_INCREF(e[0]);
            if (pairs) {
                PyObject *pair = PyTuple_Pack(2, key, e[0]);
                Py_DECREF(key);
                Py_DECREF(e[0]);
                if (pair == NULL) {
                    Py_DECREF(out);
                    return NULL;
                }
                PyList_SET_ITEM(out, c, pair);
            } else {
                PyList_SET_ITEM(keys, c, key);
                PyList_SET_ITEM(cells, c, e[0]);
            }
            c++;
        }
        if (pairs) return out;
        return Py_BuildValue("(NN)", keys, cells);
    }
    """
    ctypedef struct dp_fam:
        void *tab
        void *retired
    object dp_fam_get(dp_fam *f, Py_ssize_t *version, tuple values)
    bint dp_fam_fits(dp_fam *f, Py_ssize_t n)
    int dp_fam_insert(dp_fam *f, tuple values, object cell) except -1
    int dp_fam_remove(dp_fam *f, Py_ssize_t *version, tuple values, list graveyard) except -1
    void dp_fam_clear(dp_fam *f, list graveyard)
    void dp_fam_free(dp_fam *f)
    Py_ssize_t dp_fam_len(dp_fam *f)
    tuple dp_fam_flat(dp_fam *f, Py_ssize_t *nlabels)
    object dp_fam_items(dp_fam *f, int pairs)


def _clean_values(tuple values):
    """Label values with NUL and CR replaced by U+FFFD (see ``Family``)."""
    cdef bint dirty = False
    for v in values:
        if type(v) is str and ("\0" in <str> v or "\r" in <str> v):
            dirty = True
            break
    if not dirty:
        return values
    return tuple(
        v.replace("\0", "\ufffd").replace("\r", "\ufffd") if type(v) is str else v for v in values
    )


@cython.binding(False)
cdef class Family:
    """Label-value tuple -> cell. Creating a child takes a lock; reading one never does.

    NUL and CR in a label value become U+FFFD (the Unicode replacement
    character) when the child is created: the exposition formats have no
    escape for them, and some consumers choke on them raw. The raw tuple stays
    an alias of the cleaned child (a dict, consulted only when the table has no
    such child).

    The children live in the family's own C table (``dp_fam``, above): per child
    its cell and label values, in insertion order, and its share of an index; no
    tuple and no dict entry. ``children()`` and ``snapshot()`` build the tuples
    when asked; the exposition writer reads ``snapshot_flat()`` and builds none.
    The table takes one label count, its first child's; children with another
    count (never from ``labels()``, which checks it) live in the ``_others`` dict,
    and come after the table's in ``children()`` and scrapes.
    """

    cdef dp_fam _f
    cdef object _factory
    cdef dict _aliases
    cdef dict _others  # children whose label count is not the table's
    cdef object _lock
    # Free-threaded builds: removed children's cells and label values, kept until the family
    # dies (a lock-free reader may still hold one). Empty on builds with the GIL.
    cdef list _graveyard
    # Bumped whenever the set of children changes; the exposition writer keeps what it
    # prepared for these children (their created values' text) in ``render_cache`` and
    # uses it while the version is the same.
    cdef readonly Py_ssize_t version
    cdef public object render_cache

    def __cinit__(self, factory):
        # ``factory(label_values)`` makes a child: cells may need their labels
        # (multiprocess files are keyed by them).
        self._f.tab = NULL
        self._f.retired = NULL
        self._factory = factory
        self._aliases = {}
        self._others = {}
        self._lock = threading.Lock()
        self._graveyard = []
        self.version = 0
        self.render_cache = None

    def __dealloc__(self):
        dp_fam_free(&self._f)

    def get(self, tuple values):
        cell = dp_fam_get(&self._f, &self.version, values)
        if cell is None:
            cell = dp_dict_get(self._aliases, values)
            if cell is None and self._others:
                cell = dp_dict_get(self._others, values)
            if cell is None:
                cell = self._create(values)
        return cell

    cdef object _find(self, tuple values):
        """The child of ``values`` (None: none), under the lock."""
        cell = dp_fam_get(&self._f, &self.version, values)
        if cell is None and self._others:
            cell = self._others.get(values)
        return cell

    cdef object _create(self, tuple values):
        with self._lock:
            cell = self._find(values)
            if cell is None:
                clean = _clean_values(values)
                if clean is not values:
                    cell = self._find(clean)
                if cell is None:
                    cell = self._factory(clean)
                    if dp_fam_fits(&self._f, len(clean)):
                        dp_fam_insert(&self._f, clean, cell)
                    else:
                        self._others[clean] = cell
                    self.version += 1
                if clean is not values:
                    self._aliases[values] = cell
        return cell

    def children(self):
        """``[(label-value tuple, cell)]`` in insertion order (the tuples are built here)."""
        with self._lock:
            pairs = dp_fam_items(&self._f, 1)
            if self._others:
                pairs.extend(self._others.items())
            return pairs

    def snapshot(self):
        """``(version, label-value tuples, cells)``, consistent, in insertion order."""
        with self._lock:
            keys, cells = dp_fam_items(&self._f, 0)
            if self._others:
                keys.extend(self._others)
                cells.extend(self._others.values())
            return self.version, keys, cells

    def snapshot_flat(self):
        """``(version, label count, label values, cells)``: what a scrape reads, no tuple per child.

        The values of child ``i`` are ``values[i * count:(i + 1) * count]``; a family whose
        children have different label counts gives count -1 and one tuple per child.
        """
        cdef Py_ssize_t n
        with self._lock:
            if self._others:
                keys, cells = dp_fam_items(&self._f, 0)
                keys.extend(self._others)
                cells.extend(self._others.values())
                return self.version, -1, keys, cells
            flat, cells = dp_fam_flat(&self._f, &n)
            return self.version, n, flat, cells

    def remove(self, tuple values):
        with self._lock:
            clean = _clean_values(values)
            if dp_fam_remove(&self._f, &self.version, clean, self._graveyard) or (
                    self._others and self._others.pop(clean, None) is not None):
                self.version += 1
                # In place: a lock-free get() may be reading this very dict (free-threaded
                # builds), which a replacement could free under it.
                for k in [k for k in self._aliases if _clean_values(k) == clean]:
                    del self._aliases[k]

    def clear(self):
        with self._lock:
            dp_fam_clear(&self._f, self._graveyard)
            self._others.clear()
            self._aliases.clear()
            self.version += 1

    def __len__(self):
        return dp_fam_len(&self._f) + len(self._others)


# --- C entry points for the other compiled modules ----------------------------
#
# A .pxd beside this file would be ignored (the folder installs under another
# package path), so the other compiled modules reach the cells through this
# capsule: ``_http_c``, ``_cache_c`` and ``_features_c`` increment a cell with one C
# call, not a method lookup (the struct is declared once, in dp_api.pxi).

include "dp_api.pxi"

# The native histogram part's observe (``_native_c``), loaded with the first set_native().
cdef dp_cell_add _native_observe = NULL
_NativeType = None


cdef void _api_counter_inc(object cell, double amount) noexcept:
    _add(<Counter> cell, amount)  # attaches a cell forked before its first count


cdef void _api_histogram_observe(object cell, double amount) noexcept:
    (<Histogram> cell)._observe(amount)


cdef void _api_gauge_add(object cell, double amount) noexcept:
    dp_add(&(<Gauge> cell)._v, amount)


cdef double _api_counter_get(object cell) noexcept:
    cdef Counter c = <Counter> cell
    return c._v if c._p == NULL else dp_counter_read(c._p, &c._v)


cdef double _api_gauge_get(object cell) noexcept:
    cdef _MpGauge g
    if type(cell) is _MpGauge:
        g = <_MpGauge> cell
        return g._v if g._p == NULL else g._p[0]
    return (<Gauge> cell)._v


cdef double _api_created_get(object cell) noexcept:
    if type(cell) is Counter or isinstance(cell, Counter):
        return (<Counter> cell).created
    return (<Histogram> cell).created


cdef Py_ssize_t _api_histogram_get(object cell, double *cumulative, Py_ssize_t n, double *total,
                                   int *flags) noexcept:
    cdef Histogram h = <Histogram> cell
    cdef double acc = 0.0
    cdef Py_ssize_t i
    if n > h._b.n:
        n = h._b.n
    for i in range(n):
        acc += h._count_at(i)
        cumulative[i] = acc
    total[0] = h._sum if h._sum_p == NULL else dp_hist_sum(h._sum_p, &h._sum, h._b.n)
    flags[0] = 0 if h._rare is None else (
        (1 if h._rare.native is not None else 0) | (2 if h._rare.ex is not None else 0))
    return h._b.n


# Only these exact types stripe (multiprocess subclasses keep their values in their files).
dp_counter_type = <PyTypeObject *> Counter
dp_histogram_type = <PyTypeObject *> Histogram
dp_set_stripes(os.cpu_count() or 1)
#: Stripes a contended cell spreads over on this build (0: a GIL build, cells never stripe).
STRIPES = dp_stripe_count()

cdef dp_cells_api _api
_api.counter_inc = _api_counter_inc
_api.histogram_observe = _api_histogram_observe
_api.gauge_add = _api_gauge_add
_api.counter_get = _api_counter_get
_api.gauge_get = _api_gauge_get
_api.histogram_get = _api_histogram_get
_api.created_get = _api_created_get
C_API = PyCapsule_New(<void *> &_api, "django_prometheus._core._cells_c.C_API", NULL)

# --- Multiprocess mode ------------------------------------------------------
#
# prometheus_client's MultiProcessCollector sums the ``<type>_*.db`` files of a
# directory. Each file: a 4-byte "bytes used" header, 4 bytes of padding, then
# entries of (4-byte key length, UTF-8 JSON key padded to 8-byte alignment,
# value double, timestamp double). Our cells point straight at their value
# double in this process' file, so an increment is the same C addition as in
# single-process mode: no lock, no os.getpid(), no Python call.
#
# The files are ours alone (``counter_django_<pid>.db``, ``histogram_django_<pid>.db``,
# ``gauge_<mode>_<pid>.db_django.db``): prometheus_client keeps the "used" offset of
# its own files in memory, so two writers must never share one. When a file grows,
# the old mapping is kept: it maps the same file pages (MAP_SHARED), so pointers into
# it stay valid. Every byte is reserved on the filesystem before it is mapped
# (``_reserve``): a full disk is an OSError when a file is created or grows, never a
# SIGBUS at a write through the mapping.

cdef Py_ssize_t _INITIAL_SIZE = 1 << 16
_ENTRY_HEAD = struct.Struct("i")
_STORES = weakref.WeakSet()
# Registered once, before any cell points into a file (see dp_forked).
_WATCHES_FORKS = dp_watch_forks() == 0
_MOST_RECENT = ("mostrecent", "livemostrecent")
_GAUGE_MODES = ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", *_MOST_RECENT)
# posix_fallocate() refused by the filesystem itself (not a lack of space): write zeros instead.
_NO_FALLOCATE = {
    getattr(errno, n) for n in ("EOPNOTSUPP", "ENOTSUP", "EINVAL", "ENOSYS") if hasattr(errno, n)
}


def _reserve(f, Py_ssize_t start, Py_ssize_t end):
    """Give ``f`` real blocks for its bytes ``[start, end)`` now, growing it to ``end`` if shorter.

    The files are memory-mapped: a page the filesystem cannot back (a sparse
    file on a full disk) is a SIGBUS at the first write that touches it.
    Reserved here, a full disk is an OSError at a known point instead.
    """
    if end <= start:
        return
    try:
        os.posix_fallocate(f.fileno(), start, end - start)
        return
    except AttributeError:  # pragma: no cover - no posix_fallocate (macOS)
        pass
    except OSError as exc:  # pragma: no cover - a filesystem without fallocate
        if exc.errno not in _NO_FALLOCATE:
            raise
    size = os.fstat(f.fileno()).st_size  # zeros past the end (the file is opened "a+b")
    if end > size:
        f.write(bytes(end - size))
        f.flush()


def _filename(str directory, str typ, long pid):
    """This process' file of ``typ`` ("counter", "histogram", "gauge_<mode>")."""
    if typ.startswith("gauge_"):
        # prometheus_client reads a gauge file's mode and pid from "gauge_<mode>_<pid>.db...":
        # the pid is what precedes the third "_" minus 3 characters; ours end in "_django.db".
        return os.path.join(directory, f"{typ}_{pid}.db_django.db")
    return os.path.join(directory, f"{typ}_django_{pid}.db")


cdef Py_ssize_t _entry_size(str key):
    cdef Py_ssize_t n = len(key.encode("utf-8"))
    return 4 + n + (8 - (n + 4) % 8) + 16


def _drop_if_dead(str filename):
    """Remove ``filename`` if no live process holds it: a dead process of our pid left it.

    For live gauges (``live*`` modes): a dead process' values must not become ours.
    """
    if fcntl is None:  # pragma: no cover - no flock: no way to tell
        return
    try:
        fd = os.open(filename, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another store of this process writes it: it is live
        with contextlib.suppress(FileNotFoundError):
            if os.stat(filename).st_ino == os.fstat(fd).st_ino:
                os.remove(filename)
    finally:
        os.close(fd)


def _remove_if_empty(str filename, f):
    """A file we could not reserve and never wrote: readers must not meet an empty file."""
    with contextlib.suppress(OSError):
        st = os.fstat(f.fileno())
        if st.st_size == 0 and os.stat(filename).st_ino == st.st_ino:
            os.remove(filename)


def _open_locked(str filename):
    """Open (or create) ``filename`` and hold a shared lock on it for as long as it is open.

    The lock says "a live process writes here": compaction folds (or, for live
    gauges, drops) only files it can lock exclusively
    (``django_prometheus.multiprocess.compact``). If a compaction renamed the
    file away while we waited for the lock, open again.
    """
    while True:
        f = open(filename, "a+b")
        if fcntl is None:  # pragma: no cover - no flock on this platform: no compaction either
            return f
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        try:
            same = os.stat(filename).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return f
        f.close()


cdef class _MmapFile:
    """One per-process metrics file, append-only, in prometheus_client's format."""

    cdef object _file
    cdef list _maps  # (mmap, memoryview) pairs; a mapping is never unmapped while cells point into it
    cdef char *_base  # the newest (largest) mapping
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _used
    cdef dict _positions  # key -> offset of its value double

    def __init__(self, str filename):
        self._file = _open_locked(filename)
        self._maps = []
        self._positions = {}
        try:
            capacity = os.fstat(self._file.fileno()).st_size
            _reserve(self._file, 0, capacity or _INITIAL_SIZE)  # a sparse leftover gets its blocks too
            self._map(capacity or _INITIAL_SIZE)
        except BaseException:
            _remove_if_empty(filename, self._file)
            self._file.close()
            raise
        self._used = (<int *> self._base)[0]
        if self._used == 0:
            self._used = 8
            dp_store_used(self._base, 8)
        else:  # a recycled pid: keep appending to what the earlier process left
            self._index()

    cdef void _map(self, Py_ssize_t capacity) except *:
        cdef unsigned char[::1] view
        m = mmap.mmap(self._file.fileno(), capacity)
        view = m
        self._maps.append((m, view))
        self._base = <char *> &view[0]
        self._capacity = capacity

    cdef void _index(self) except *:
        cdef Py_ssize_t pos = 8, n
        if self._used > self._capacity:
            raise RuntimeError("metrics file is corrupted: header beyond file size")
        while pos < self._used:
            n = (<int *> (self._base + pos))[0]
            if n < 0 or pos + 4 + n > self._used:
                raise RuntimeError("metrics file is corrupted: entry beyond used size")
            key = (self._base + pos + 4)[:n].decode("utf-8")
            pos += 4 + n + (8 - (n + 4) % 8)
            self._positions[key] = pos
            pos += 16

    cdef double *slot(self, str key) except NULL:
        pos = self._positions.get(key)
        if pos is None:
            pos = self._append(key)
        return <double *> (self._base + <Py_ssize_t> pos)

    cdef void make_room(self, keys) except *:
        """Reserve the space of every absent entry of ``keys`` at once (OSError: none is added)."""
        cdef Py_ssize_t need = self._used
        cdef Py_ssize_t capacity = self._capacity
        for key in set(keys):
            if key not in self._positions:
                need += _entry_size(key)
        while need > capacity:
            capacity *= 2
        if capacity != self._capacity:
            _reserve(self._file, self._capacity, capacity)
            self._map(capacity)

    cdef Py_ssize_t _append(self, str key) except -1:
        self.make_room((key,))
        encoded = key.encode("utf-8")
        cdef Py_ssize_t n = len(encoded)
        cdef Py_ssize_t padded = n + (8 - (n + 4) % 8)
        cdef Py_ssize_t size = 4 + padded + 16
        cdef Py_ssize_t start = self._used
        cdef char *p
        entry = _ENTRY_HEAD.pack(n) + encoded + b" " * (padded - n) + b"\0" * 16
        p = entry
        memcpy(self._base + start, p, size)
        self._used = start + size
        dp_store_used(self._base, <int> self._used)
        self._positions[key] = start + 4 + padded
        return start + 4 + padded

    def close(self):
        # Only called once no cell points into the mappings any more.
        mappings = [pair[0] for pair in self._maps]
        self._maps = []  # drops the views, releasing the buffers
        self._base = NULL
        for m in mappings:
            try:
                m.close()
            except BufferError:  # pragma: no cover - a view still alive: leave it mapped
                pass
        self._file.close()


cdef class _MpCounter(Counter):
    """A counter whose value is an entry of this process' counter file, once written."""

    cdef object _store
    cdef str _key

    cdef void _attach(self) noexcept:
        try:
            self._store._attach(self)
        except BaseException:  # pragma: no cover - _attach logs its own failures
            pass
        if self._p == NULL:  # never leave a write without a target
            self._p = &self._v


cdef class _MpGauge(Gauge):
    """A gauge whose value is an entry of this process' file of its mode, once written."""

    cdef object _store
    cdef str _key
    cdef str _typ
    cdef bint _stamp  # a mostrecent mode: set() writes the time next to the value
    cdef double *_p

    def inc(self, double amount=1.0):
        self._add(amount, "inc")

    def dec(self, double amount=1.0):
        self._add(-amount, "dec")

    cdef void _add(self, double amount, str how) except *:
        if self._stamp:  # as prometheus_client's Gauge: the newest value needs a set()
            raise RuntimeError(f"{how} must not be used with the mostrecent mode")
        if dp_forked:
            _forked()
        if self._p == NULL:
            self._attach()
        dp_add(self._p, amount)

    def set(self, double value):
        if dp_forked:
            _forked()
        if self._p == NULL:
            self._attach()
        self._p[0] = value
        if self._stamp and self._p != &self._v:
            self._p[1] = time.time()

    def set_to_current_time(self):
        self.set(time.time())

    def get(self):
        if dp_forked:
            _forked()
        if self._p == NULL:
            return self._v
        return self._p[0]

    cdef void _attach(self) noexcept:
        try:
            self._store._attach(self)
        except BaseException:  # pragma: no cover - _attach logs its own failures
            pass
        if self._p == NULL:
            self._p = &self._v

    cdef void _detach(self) noexcept:
        if self._p != NULL:
            self._v = self._p[0]
        self._p = &self._v


cdef class _MpHistogram(Histogram):
    """A histogram whose buckets and sum are entries of this process' histogram file, once written."""

    cdef object _store
    cdef tuple _keys
    cdef str _sum_key

    cdef void _attach(self) noexcept:
        try:
            self._store._attach(self)
        except BaseException:  # pragma: no cover
            pass
        if self._sum_p == NULL:
            self._sum_p = &self._sum


cdef class MultiProcessStore:
    """This process' metrics files in ``directory``, and every cell that points into them.

    A cell gets its entry when it is created, so its zero shows in scrapes, as
    with prometheus_client's own values. After a fork the child's cells go
    back to "not written yet" (an ``os.register_at_fork`` hook, plus
    ``check_pid()`` for servers such as uWSGI that fork without running
    Python's fork hooks; call it once per request), so only its first write
    opens files of its own: a forked child that never counts (``subprocess``
    with ``preexec_fn``, a ``multiprocessing`` pool) leaves no file behind.
    The parent's counts stay in the parent's files.

    Here every fork is seen, also one that skips Python's hooks: a C
    ``pthread_atfork`` handler marks the child, and its first write (or read)
    through any cell moves the cells first (``watches_forks`` is True, and
    ``check_pid()`` per request is not needed). Writes are then a plain C
    store through the slot the cell got when it was attached.

    A file that cannot be created or grown (a full disk: its space is reserved
    up front) stops this process from writing files: the failure is logged
    once, and every cell goes on counting in process only.
    """

    #: True: a fork is noticed at the child's first write, whoever forked; no per-request check_pid().
    watches_forks = _WATCHES_FORKS

    cdef readonly str directory
    cdef readonly long pid
    cdef dict _files
    cdef list _tracked
    cdef object _lock
    cdef bint _closed
    cdef object _failed  # the OSError that stopped this process from writing files, if any
    cdef object __weakref__

    def __init__(self, str directory):
        self.directory = directory
        self.pid = os.getpid()
        self._files = {}
        self._tracked = []
        self._lock = threading.Lock()
        self._closed = False
        self._failed = None
        _STORES.add(self)

    cdef _MmapFile _file_for(self, str typ):
        f = self._files.get(typ)
        if f is None:
            filename = _filename(self.directory, typ, self.pid)
            if typ.startswith("gauge_live"):
                _drop_if_dead(filename)
            f = self._files[typ] = _MmapFile(filename)
        return <_MmapFile> f

    def counter(self, str key):
        """A Counter whose value is the ``key`` entry of this process' counter file."""
        cdef _MpCounter cell = _MpCounter()
        cell._store = self
        cell._key = key
        cell._p = NULL
        return self._track(cell)

    def gauge(self, str key, str mode="all"):
        """A Gauge whose value is the ``key`` entry of this process' file for ``mode``.

        ``mode`` is prometheus_client's ``multiprocess_mode``; files of ``live*``
        modes are dropped once their process is gone (``multiprocess.compact``).
        """
        if mode not in _GAUGE_MODES:
            raise ValueError(f"Invalid multiprocess mode: {mode}")
        cdef _MpGauge cell = _MpGauge()
        cell._store = self
        cell._key = key
        cell._typ = "gauge_" + mode
        cell._stamp = mode in _MOST_RECENT
        cell._p = NULL
        return self._track(cell)

    def histogram(self, bounds, bucket_keys, str sum_key):
        """A Histogram whose buckets and sum are entries of this process' histogram file."""
        cdef _MpHistogram cell = _MpHistogram(bounds)
        keys = tuple(bucket_keys)
        if len(keys) != cell._b.n:
            raise ValueError("one key per bucket is needed")
        cell._store = self
        cell._keys = keys
        cell._sum_key = sum_key
        cell._sum_p = NULL
        return self._track(cell)

    cdef object _track(self, object cell):
        """Keep ``cell`` re-attachable after a fork, and give it its slots now."""
        self.check_pid()
        with self._lock:
            self._check_open()
            self._tracked.append(cell)
        self._attach(cell)  # its zero shows from now on, as prometheus_client's values do
        return cell

    def _attach(self, cell):
        """Give an unwritten cell its slots in this process' file (its first write)."""
        cdef _MpCounter counter
        cdef _MpGauge gauge
        cdef _MpHistogram hist
        cdef _MmapFile f
        cdef double *p
        cdef double **slots
        cdef Py_ssize_t i
        with self._lock:
            if isinstance(cell, _MpCounter):
                counter = <_MpCounter> cell
                if counter._p != NULL:
                    return
                if self._closed or self._failed is not None:
                    counter._p = &counter._v
                    return
                try:
                    p = self._file_for("counter").slot(counter._key)
                except OSError as exc:
                    self._fail(exc)
                    counter._p = &counter._v
                    return
                p[0] += counter._v  # (0 unless the cell counted in process before)
                counter._v = 0.0
                counter._p = p
                return
            if isinstance(cell, _MpGauge):
                gauge = <_MpGauge> cell
                if gauge._p != NULL:
                    return
                if self._closed or self._failed is not None:
                    gauge._p = &gauge._v
                    return
                try:
                    p = self._file_for(gauge._typ).slot(gauge._key)
                except OSError as exc:
                    self._fail(exc)
                    gauge._p = &gauge._v
                    return
                p[0] += gauge._v
                gauge._v = 0.0
                gauge._p = p
                return
            hist = <_MpHistogram> cell
            if hist._sum_p != NULL:
                return
            if self._closed or self._failed is not None:
                hist._sum_p = &hist._sum
                return
            slots = <double **> PyMem_Malloc(hist._b.n * sizeof(double *))
            if slots == NULL:
                raise MemoryError()
            try:
                f = self._file_for("histogram")
                f.make_room((*hist._keys, hist._sum_key))  # all of the cell's entries, or none
                for i in range(hist._b.n):
                    slots[i] = f.slot(hist._keys[i])
                p = f.slot(hist._sum_key)
            except OSError as exc:
                PyMem_Free(slots)
                self._fail(exc)
                hist._sum_p = &hist._sum
                return
            for i in range(hist._b.n):
                slots[i][0] += hist._counts[i]
            p[0] += hist._sum
            hist._rare_part().slots = slots
            hist._sum_p = p

    def _fail(self, exc):
        self._failed = exc
        logging.getLogger("django_prometheus").error(
            "django_prometheus: cannot write this process' multiprocess metrics files in %s (%s); "
            "process %s counts in memory only, and its counts are missing from every scrape",
            self.directory, exc, self.pid)

    def _check_open(self):
        if self._closed:
            raise RuntimeError("this multiprocess store is closed")

    def check_pid(self):
        """Start over as a new process (no files yet) if we are in a forked child."""
        if os.getpid() != self.pid:
            self._after_fork()

    def _after_fork(self):
        if os.getpid() == self.pid:
            return  # made in this process (after the fork), or already moved
        # The parent's threads did not come along: its lock may be held forever.
        self._lock = threading.Lock()
        with self._lock:
            if self._closed or os.getpid() == self.pid:
                return
            old = self._files
            self._files = {}
            self._failed = None
            self.pid = os.getpid()
            for cell in self._tracked:
                if isinstance(cell, _MpCounter):
                    (<_MpCounter> cell)._v = 0.0
                    (<_MpCounter> cell)._p = NULL
                elif isinstance(cell, _MpGauge):
                    (<_MpGauge> cell)._v = 0.0
                    (<_MpGauge> cell)._p = NULL
                else:
                    (<_MpHistogram> cell)._reset()
            for f in old.values():
                (<_MmapFile> f).close()

    def files(self):
        """The paths of the files this process has written so far."""
        return [_filename(self.directory, typ, self.pid) for typ in self._files]

    def close(self):
        """Detach every cell (they keep their values, in process) and close the files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cell in self._tracked:
                if isinstance(cell, _MpCounter):
                    (<_MpCounter> cell)._detach()
                elif isinstance(cell, _MpGauge):
                    (<_MpGauge> cell)._detach()
                else:
                    (<_MpHistogram> cell)._detach()
            self._tracked = []
            for f in self._files.values():
                (<_MmapFile> f).close()
            self._files = {}


def _reopen_after_fork():
    dp_fork_seen()
    for store in list(_STORES):
        store._after_fork()


cdef void _forked() noexcept:
    # A fork that Python's hooks did not see (uWSGI forks its workers so): the first write
    # in the child, or read, does what the hook would have done.
    try:
        _reopen_after_fork()
    except BaseException:  # pragma: no cover - instrumentation never breaks the app
        dp_fork_seen()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reopen_after_fork)
