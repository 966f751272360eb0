# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled cells: C counters and histograms, label families and the cache get() fast path.

The pure-Python twin is ``_cells_py.py``; keep both in step (same names, same
behaviour). Increments are plain C additions under the GIL (which Python threads
cannot interrupt) and atomic compare-and-swap loops on free-threaded builds, so
no increment ever takes a lock.
"""

import threading
import time

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from prometheus_client.context_managers import ExceptionCounter, InprogressTracker, Timer

cdef extern from *:
    """
    #if defined(Py_GIL_DISABLED) && defined(_MSC_VER)
    #include <intrin.h>
    static inline void dp_add(double *p, double v) {
        union { double d; __int64 i; } old, new_;
        old.d = *(volatile double *)p;
        for (;;) {
            __int64 seen;
            new_.d = old.d + v;
            seen = _InterlockedCompareExchange64((volatile __int64 *)p, new_.i, old.i);
            if (seen == old.i) break;
            old.i = seen;
        }
    }
    #elif defined(Py_GIL_DISABLED)
    static inline void dp_add(double *p, double v) {
        double old, new_;
        __atomic_load(p, &old, __ATOMIC_RELAXED);
        do { new_ = old + v; }
        while (!__atomic_compare_exchange(p, &old, &new_, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    }
    #else
    /* With the GIL held for the whole call no other Python thread can interleave. */
    static inline void dp_add(double *p, double v) { *p += v; }
    #endif
    """
    void dp_add(double *p, double v) nogil

__all__ = [
    "MISSING",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "instrument_get",
    "record_get_many",
]

MISSING = object()
cdef object _MISSING = MISSING
cdef double _INF = float("inf")


cdef class Counter:
    """A monotonically increasing float."""

    cdef double _v
    cdef readonly double created

    def __cinit__(self):
        self._v = 0.0
        self.created = time.time()

    def inc(self, double amount=1.0, exemplar=None):
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        dp_add(&self._v, amount)

    def get(self):
        return self._v

    def count_exceptions(self, exception=Exception):
        return ExceptionCounter(self, exception)

    @property
    def _value(self):
        # prometheus_client children expose their value as ``child._value.get()``;
        # users' tests rely on it.
        return self


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


cdef class Histogram:
    """Fixed upper bounds, one count per bucket and a running sum."""

    cdef double *_bounds
    cdef double *_counts
    cdef Py_ssize_t _n
    cdef double _sum
    cdef readonly tuple bounds
    cdef readonly double created

    def __cinit__(self, bounds):
        cdef Py_ssize_t i
        self.bounds = _check_bounds(bounds)
        self._n = len(self.bounds)
        self._bounds = <double *> PyMem_Malloc(self._n * sizeof(double))
        self._counts = <double *> PyMem_Malloc(self._n * sizeof(double))
        if self._bounds == NULL or self._counts == NULL:
            raise MemoryError()
        for i in range(self._n):
            self._bounds[i] = self.bounds[i]
            self._counts[i] = 0.0
        self._sum = 0.0
        self.created = time.time()

    def __dealloc__(self):
        PyMem_Free(self._bounds)
        PyMem_Free(self._counts)

    cdef inline void _observe(self, double amount) noexcept:
        # First bound >= amount, by bisection. The last bound is +Inf, so every
        # number finds a bucket; NaN (all comparisons false) finds none, as in
        # prometheus_client.
        cdef Py_ssize_t lo = 0, hi = self._n - 1, mid
        dp_add(&self._sum, amount)
        if amount != amount:
            return
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._bounds[mid] < amount:
                lo = mid + 1
            else:
                hi = mid
        dp_add(&self._counts[lo], 1.0)

    def observe(self, double amount, exemplar=None):
        self._observe(amount)

    def time(self):
        return Timer(self, "observe")

    @property
    def sum(self):
        return self._sum

    @property
    def count(self):
        cdef double acc = 0.0
        cdef Py_ssize_t i
        for i in range(self._n):
            acc += self._counts[i]
        return acc

    def buckets(self):
        """Cumulative bucket counts, one per bound (what ``_bucket`` samples show)."""
        cdef double acc = 0.0
        cdef Py_ssize_t i
        out = []
        for i in range(self._n):
            acc += self._counts[i]
            out.append(acc)
        return out


def _check_bounds(bounds):
    b = [float(x) for x in bounds]
    if b != sorted(b):
        raise ValueError("Buckets not in sorted order")
    if not b or b[len(b) - 1] != _INF:  # (wraparound is off in this module)
        b.append(_INF)
    if len(b) < 2:
        raise ValueError("Must have at least two buckets")
    return tuple(b)


cdef class Family:
    """Label-value tuple -> cell. Creating a child takes a lock; reading one never does."""

    cdef object _factory
    cdef dict _children
    cdef object _lock

    def __cinit__(self, factory):
        self._factory = factory
        self._children = {}
        self._lock = threading.Lock()

    def get(self, tuple values):
        cell = self._children.get(values)
        if cell is None:
            with self._lock:
                cell = self._children.get(values)
                if cell is None:
                    cell = self._factory()
                    self._children[values] = cell
        return cell

    def children(self):
        return list(self._children.items())

    def remove(self, tuple values):
        with self._lock:
            self._children.pop(values, None)

    def clear(self):
        with self._lock:
            self._children.clear()

    def __len__(self):
        return len(self._children)


def instrument_get(real_get, Counter gets not None, Counter hits not None,
                   Counter misses not None, Counter fails not None,
                   interrupted=MISSING):
    """Wrap a cache backend's ``get`` so that each call counts get + hit/miss/fail.

    ``real_get(key, MISSING, version, **kwargs)`` is called; getting ``MISSING``
    back is a miss (so stored falsy values and ``None`` are hits), getting
    ``interrupted`` back is a failure the backend chose to swallow (django-redis'
    ``IGNORE_EXCEPTIONS``), and an exception is counted and re-raised unchanged.
    """

    # A closure compiles to a vectorcall function with C-level access to the
    # cells: no bound-method object, no argument tuple, no attribute lookups.
    def get(key, default=None, version=None, **kwargs):
        try:
            if kwargs:
                value = real_get(key, _MISSING, version, **kwargs)
            else:
                value = real_get(key, _MISSING, version)
        except Exception:
            dp_add(&gets._v, 1.0)
            dp_add(&fails._v, 1.0)
            raise
        dp_add(&gets._v, 1.0)
        if value is _MISSING:
            dp_add(&misses._v, 1.0)
            return default
        if value is interrupted:
            dp_add(&fails._v, 1.0)
            return default
        dp_add(&hits._v, 1.0)
        return value

    return get


def record_get_many(requested, Py_ssize_t found, Counter gets not None,
                    Counter hits not None, Counter misses not None):
    """Count a native ``get_many``: each distinct requested key is one get and one hit or miss."""
    cdef Py_ssize_t n = len(set(requested))
    dp_add(&gets._v, <double> n)
    dp_add(&hits._v, <double> found)
    dp_add(&misses._v, <double> (n - found))
