# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled cells: C counters and histograms, label families and the cache get() fast path.

The pure-Python twin is ``_cells_py.py``; keep both in step (same names, same
behaviour). Increments are plain C additions under the GIL (which Python threads
cannot interrupt) and atomic compare-and-swap loops on free-threaded builds, so
no increment ever takes a lock.
"""

import mmap
import os
import struct
import threading
import time
import weakref

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy
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

__all__ = [
    "MISSING",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MultiProcessStore",
    "instrument_get",
    "record_get_many",
]

MISSING = object()
cdef object _MISSING = MISSING
cdef double _INF = float("inf")


cdef class Counter:
    """A monotonically increasing float.

    The value lives at ``_p``: the cell's own ``_v``, or, in multiprocess mode,
    a slot of this process' metrics file (see ``MultiProcessStore``).
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
        dp_add(self._p, amount)

    def get(self):
        return self._p[0]

    cdef void _detach(self) noexcept:
        self._v = self._p[0]
        self._p = &self._v

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
    cdef double **_slots  # where each bucket's count lives: _counts, or multiprocess file slots
    cdef Py_ssize_t _n
    cdef double _sum
    cdef double *_sum_p
    cdef readonly tuple bounds
    cdef readonly double created

    def __cinit__(self, bounds):
        cdef Py_ssize_t i
        self.bounds = _check_bounds(bounds)
        self._n = len(self.bounds)
        self._bounds = <double *> PyMem_Malloc(self._n * sizeof(double))
        self._counts = <double *> PyMem_Malloc(self._n * sizeof(double))
        self._slots = <double **> PyMem_Malloc(self._n * sizeof(double *))
        if self._bounds == NULL or self._counts == NULL or self._slots == NULL:
            raise MemoryError()
        for i in range(self._n):
            self._bounds[i] = self.bounds[i]
            self._counts[i] = 0.0
            self._slots[i] = &self._counts[i]
        self._sum = 0.0
        self._sum_p = &self._sum
        self.created = time.time()

    def __dealloc__(self):
        PyMem_Free(self._bounds)
        PyMem_Free(self._counts)
        PyMem_Free(self._slots)

    cdef void _detach(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self._n):
            self._counts[i] = self._slots[i][0]
            self._slots[i] = &self._counts[i]
        self._sum = self._sum_p[0]
        self._sum_p = &self._sum

    cdef inline void _observe(self, double amount) noexcept:
        # First bound >= amount, by bisection. The last bound is +Inf, so every
        # number finds a bucket; NaN (all comparisons false) finds none, as in
        # prometheus_client.
        cdef Py_ssize_t lo = 0, hi = self._n - 1, mid
        dp_add(self._sum_p, amount)
        if amount != amount:
            return
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._bounds[mid] < amount:
                lo = mid + 1
            else:
                hi = mid
        dp_add(self._slots[lo], 1.0)

    def observe(self, double amount, exemplar=None):
        self._observe(amount)

    def time(self):
        return Timer(self, "observe")

    @property
    def sum(self):
        return self._sum_p[0]

    @property
    def count(self):
        cdef double acc = 0.0
        cdef Py_ssize_t i
        for i in range(self._n):
            acc += self._slots[i][0]
        return acc

    def buckets(self):
        """Cumulative bucket counts, one per bound (what ``_bucket`` samples show)."""
        cdef double acc = 0.0
        cdef Py_ssize_t i
        out = []
        for i in range(self._n):
            acc += self._slots[i][0]
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
    cdef bint _pass_values
    cdef dict _children
    cdef object _lock

    def __cinit__(self, factory, bint pass_values=False):
        # ``pass_values``: call ``factory(values)`` rather than ``factory()``, for
        # cells that need to know their labels (multiprocess files are keyed by them).
        self._factory = factory
        self._pass_values = pass_values
        self._children = {}
        self._lock = threading.Lock()

    def get(self, tuple values):
        cell = self._children.get(values)
        if cell is None:
            with self._lock:
                cell = self._children.get(values)
                if cell is None:
                    cell = self._factory(values) if self._pass_values else self._factory()
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
            dp_add(gets._p, 1.0)
            dp_add(fails._p, 1.0)
            raise
        dp_add(gets._p, 1.0)
        if value is _MISSING:
            dp_add(misses._p, 1.0)
            return default
        if value is interrupted:
            dp_add(fails._p, 1.0)
            return default
        dp_add(hits._p, 1.0)
        return value

    return get


def record_get_many(requested, Py_ssize_t found, Counter gets not None,
                    Counter hits not None, Counter misses not None):
    """Count a native ``get_many``: each distinct requested key is one get and one hit or miss."""
    cdef Py_ssize_t n = len(set(requested))
    dp_add(gets._p, <double> n)
    dp_add(hits._p, <double> found)
    dp_add(misses._p, <double> (n - found))



# --- C entry points for the other compiled modules ----------------------------
#
# A .pxd beside this file would be ignored (the folder installs under another
# package path), so the other compiled modules reach the cells through this
# capsule: ``_http_c`` increments a cell with one C call, not a method lookup.
# ``_http_c.pyx`` declares the same struct; change both together.

from cpython.pycapsule cimport PyCapsule_New

ctypedef void (*dp_cell_add)(object, double) noexcept

cdef struct dp_cells_api:
    dp_cell_add counter_inc
    dp_cell_add histogram_observe


cdef void _api_counter_inc(object cell, double amount) noexcept:
    dp_add((<Counter> cell)._p, amount)


cdef void _api_histogram_observe(object cell, double amount) noexcept:
    (<Histogram> cell)._observe(amount)


cdef dp_cells_api _api
_api.counter_inc = _api_counter_inc
_api.histogram_observe = _api_histogram_observe
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
# The files are ours alone (``counter_django_<pid>.db``, ``histogram_django_<pid>.db``):
# prometheus_client keeps the "used" offset of its own files in memory, so two
# writers must never share one. When a file grows, the old mapping is kept:
# it maps the same file pages (MAP_SHARED), so pointers into it stay valid.

cdef Py_ssize_t _INITIAL_SIZE = 1 << 16
_ENTRY_HEAD = struct.Struct("i")
_STORES = weakref.WeakSet()


cdef class _MmapFile:
    """One per-process metrics file, append-only, in prometheus_client's format."""

    cdef object _file
    cdef list _maps  # (mmap, memoryview) pairs; a mapping is never unmapped while cells point into it
    cdef char *_base  # the newest (largest) mapping
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _used
    cdef dict _positions  # key -> offset of its value double

    def __init__(self, str filename):
        self._file = open(filename, "a+b")
        self._maps = []
        self._positions = {}
        capacity = os.fstat(self._file.fileno()).st_size
        if capacity == 0:
            capacity = _INITIAL_SIZE
            self._file.truncate(capacity)
        self._map(capacity)
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

    cdef Py_ssize_t _append(self, str key) except -1:
        encoded = key.encode("utf-8")
        cdef Py_ssize_t n = len(encoded)
        cdef Py_ssize_t padded = n + (8 - (n + 4) % 8)
        cdef Py_ssize_t size = 4 + padded + 16
        cdef Py_ssize_t capacity = self._capacity
        cdef Py_ssize_t start = self._used
        cdef char *p
        while start + size > capacity:
            capacity *= 2
        if capacity != self._capacity:
            self._file.truncate(capacity)
            self._map(capacity)
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


cdef class MultiProcessStore:
    """This process' metrics files in ``directory``, and every cell that points into them.

    After a fork the child re-points every cell at files of its own (an
    ``os.register_at_fork`` hook, plus ``check_pid()`` for servers such as
    uWSGI that fork without running Python's fork hooks; call it once per
    request). The parent's counts stay in the parent's files.
    """

    cdef readonly str directory
    cdef readonly long pid
    cdef dict _files
    cdef list _tracked  # (cell, file type, keys)
    cdef object _lock
    cdef bint _closed
    cdef object __weakref__

    def __init__(self, str directory):
        self.directory = directory
        self.pid = os.getpid()
        self._files = {}
        self._tracked = []
        self._lock = threading.Lock()
        self._closed = False
        _STORES.add(self)

    cdef _MmapFile _file_for(self, str typ):
        f = self._files.get(typ)
        if f is None:
            f = self._files[typ] = _MmapFile(
                os.path.join(self.directory, f"{typ}_django_{self.pid}.db"))
        return <_MmapFile> f

    def counter(self, str key):
        """A Counter whose value is the ``key`` entry of this process' counter file."""
        cdef Counter cell = Counter()
        self.check_pid()
        with self._lock:
            self._check_open()
            cell._p = self._file_for("counter").slot(key)
            self._tracked.append((cell, "counter", key))
        return cell

    def histogram(self, bounds, bucket_keys, str sum_key):
        """A Histogram whose buckets and sum are entries of this process' histogram file."""
        cdef Histogram cell = Histogram(bounds)
        cdef _MmapFile f
        cdef Py_ssize_t i
        keys = tuple(bucket_keys)
        if len(keys) != cell._n:
            raise ValueError("one key per bucket is needed")
        self.check_pid()
        with self._lock:
            self._check_open()
            f = self._file_for("histogram")
            for i in range(cell._n):
                cell._slots[i] = f.slot(keys[i])
            cell._sum_p = f.slot(sum_key)
            self._tracked.append((cell, "histogram", (keys, sum_key)))
        return cell

    def _check_open(self):
        if self._closed:
            raise RuntimeError("this multiprocess store is closed")

    def check_pid(self):
        """Re-point every cell at this process' own files if we are in a forked child."""
        if os.getpid() != self.pid:
            self._after_fork()

    def _after_fork(self):
        cdef Counter counter
        cdef Histogram hist
        cdef _MmapFile f
        cdef Py_ssize_t i
        # The parent's threads did not come along: its lock may be held forever.
        self._lock = threading.Lock()
        with self._lock:
            if self._closed or os.getpid() == self.pid:
                return
            old = self._files
            self._files = {}
            self.pid = os.getpid()
            for cell, typ, keys in self._tracked:
                f = self._file_for(typ)
                if typ == "counter":
                    counter = <Counter> cell
                    counter._p = f.slot(keys)
                else:
                    hist = <Histogram> cell
                    for i in range(hist._n):
                        hist._slots[i] = f.slot(keys[0][i])
                    hist._sum_p = f.slot(keys[1])
            for f in old.values():
                f.close()

    def close(self):
        """Detach every cell (they keep their values, in process) and close the files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cell, typ, _ in self._tracked:
                if typ == "counter":
                    (<Counter> cell)._detach()
                else:
                    (<Histogram> cell)._detach()
            self._tracked = []
            for f in self._files.values():
                f.close()
            self._files = {}


def _reopen_after_fork():
    for store in list(_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reopen_after_fork)
