# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled native (sparse exponential) histograms and their protobuf bytes.

The pure-Python twin is ``_native_py.py`` (the rules are written out there); keep
both in step. Buckets are two sorted arrays per side (keys, counts), so a child
costs 12 bytes per populated bucket. An observation is a few C operations under
the GIL, which no other Python thread can interrupt.

Free-threaded builds: ``observe()`` takes no lock on its common path. The
arrays' shape (which keys exist, where they sit, the schema) changes only on
rare paths: a bucket not populated yet, a halving, multiprocess write-through,
``reset()``. Everything else is one atomic increment of an existing count (a
bucket's or the zero bucket's). The two kinds of writers share the cell through
a gate, one atomic word: a common-path observer adds 1 to it on the way in and
takes 1 away on the way out; a rare-path writer takes the cell's mutex, sets the
gate's EXCLUSIVE bit and waits until no observer is inside, changes the arrays
with plain C, then clears the bit. An observer that finds the bit set (or its
key missing, or the part due to halve) leaves the gate and takes the rare path.
Observers inside the gate run pure C (no Python call, no lock), so the wait is
a few hundred nanoseconds unless the OS parks one of them (the waiter yields).

Readers (``state()``, the protobuf writer, ``count``) take the mutex, which
keeps the shape still, and read each count with one atomic load while observers
keep counting. The counts only grow between shape changes, so a read is every
count at some instant between the read's start and end: per bucket never below
the previous read, and the histogram's count is derived from these very counts
(zero bucket + buckets: the protobuf ``sample_count``), so it always equals them.
A halving (counts move between buckets) or a reset never overlaps a read.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.math cimport floor, frexp, log
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

import json
import os
import struct
import sys

from ._native_bounds import BOUNDS

cdef extern from "dp_immortal.h":
    pass


cdef extern from *:
    """
    #include <stdint.h>
    #if defined(Py_GIL_DISABLED)
    /* The gate and the mutex of a free-threaded build (the module docstring says why). */
    #if defined(_WIN32)
    #include <windows.h>
    #define dp_nh_yield() SwitchToThread()
    #else
    #include <sched.h>
    #define dp_nh_yield() sched_yield()
    #endif
    #define DP_NH_FT 1
    #define DP_NH_EXCLUSIVE ((uint64_t)1 << 62)
    typedef PyMutex dp_nh_mutex;
    /* 0: a rare-path writer holds the cell (leave); 1: in; 2: in, and another observer was
       inside too (contention: the cell stripes, see _observe). */
    static inline int dp_nh_enter(uint64_t *gate) {
        uint64_t old = _Py_atomic_add_uint64(gate, 1);
        if (old & DP_NH_EXCLUSIVE) {
            _Py_atomic_add_uint64(gate, (uint64_t)-1);
            return 0;
        }
        return old ? 2 : 1;
    }
    /* Stripes of a hot part: a thread takes the next one in turn the first time it observes
       into a striped part (round robin, as the classic cells' stripes). */
    #if defined(_MSC_VER)
    #define DP_NH_TLS __declspec(thread)
    #else
    #define DP_NH_TLS __thread
    #endif
    static Py_ssize_t dp_nh_nstripes = 4;
    static int dp_nh_threads;
    static DP_NH_TLS int dp_nh_my_slot;
    static inline Py_ssize_t dp_nh_slot(void) {
        int s = dp_nh_my_slot;
        if (s == 0) s = dp_nh_my_slot = _Py_atomic_add_int(&dp_nh_threads, 1) + 1;
        return (Py_ssize_t)((s - 1) & (dp_nh_nstripes - 1));
    }
    static inline void dp_nh_set_stripes(Py_ssize_t cpus) {
        Py_ssize_t n = 4;
        while (n < 2 * cpus && n < 32) n <<= 1;
        dp_nh_nstripes = n;
    }
    static inline Py_ssize_t dp_nh_stripe_count(void) { return dp_nh_nstripes; }
    static inline void *dp_nh_load_ptr(void **pp) { return _Py_atomic_load_ptr_acquire(pp); }
    /* A striped part is immortal on 3.13t, as a striped classic cell is (dp_immortal.h says
       why): the classic cell passes its part to the observe call with a reference taken and
       dropped, an atomic write to the part's header from every thread. */
    #define dp_nh_share dp_make_shared
    static inline int dp_nh_publish(void **pp, void *p) {
        void *expected = NULL;
        return _Py_atomic_compare_exchange_ptr(pp, &expected, p);
    }
    static inline void dp_nh_leave(uint64_t *gate) { _Py_atomic_add_uint64(gate, (uint64_t)-1); }
    static inline void dp_nh_lock(dp_nh_mutex *m) { PyMutex_Lock(m); }
    static inline void dp_nh_unlock(dp_nh_mutex *m) { PyMutex_Unlock(m); }
    /* With the mutex held: no observer inside the gate from now until dp_nh_admit. */
    static void dp_nh_exclude(uint64_t *gate) {
        int spins = 0;
        _Py_atomic_or_uint64(gate, DP_NH_EXCLUSIVE);
        while ((_Py_atomic_load_uint64(gate) & ~DP_NH_EXCLUSIVE) != 0) {
            if (++spins >= 64) { spins = 0; dp_nh_yield(); }
        }
    }
    static inline void dp_nh_admit(uint64_t *gate) { _Py_atomic_and_uint64(gate, ~DP_NH_EXCLUSIVE); }
    static inline void dp_nh_inc(uint64_t *p) { _Py_atomic_add_uint64(p, 1); }
    static inline uint64_t dp_nh_load(uint64_t *p) { return _Py_atomic_load_uint64_relaxed(p); }
    static inline int dp_nh_load_int(int *p) { return _Py_atomic_load_int_relaxed(p); }
    static inline void dp_nh_add_double(double *p, double v) {
        union { double d; uint64_t u; } old, new_;
        old.u = _Py_atomic_load_uint64_relaxed((uint64_t *)p);
        do { new_.d = old.d + v; } while (!_Py_atomic_compare_exchange_uint64((uint64_t *)p, &old.u, new_.u));
    }
    #else
    /* GIL builds: an observation runs whole under the GIL; every call here is a plain access. */
    #define DP_NH_FT 0
    typedef char dp_nh_mutex;
    static inline int dp_nh_enter(uint64_t *gate) { (void)gate; return 1; }
    static inline Py_ssize_t dp_nh_slot(void) { return 0; }
    static inline void dp_nh_set_stripes(Py_ssize_t cpus) { (void)cpus; }
    static inline Py_ssize_t dp_nh_stripe_count(void) { return 0; }
    static inline void *dp_nh_load_ptr(void **pp) { return *pp; }
    static inline int dp_nh_publish(void **pp, void *p) { (void)pp; (void)p; return 0; }
    static inline void dp_nh_share(PyObject *op) { (void)op; }
    static inline void dp_nh_leave(uint64_t *gate) { (void)gate; }
    static inline void dp_nh_lock(dp_nh_mutex *m) { (void)m; }
    static inline void dp_nh_unlock(dp_nh_mutex *m) { (void)m; }
    static inline void dp_nh_exclude(uint64_t *gate) { (void)gate; }
    static inline void dp_nh_admit(uint64_t *gate) { (void)gate; }
    static inline void dp_nh_inc(uint64_t *p) { *p += 1; }
    static inline uint64_t dp_nh_load(uint64_t *p) { return *p; }
    static inline int dp_nh_load_int(int *p) { return *p; }
    static inline void dp_nh_add_double(double *p, double v) { *p += v; }
    #endif
    """
    const bint DP_NH_FT
    ctypedef char dp_nh_mutex
    int dp_nh_enter(uint64_t *gate) noexcept nogil
    Py_ssize_t dp_nh_slot() noexcept nogil
    void dp_nh_set_stripes(Py_ssize_t cpus) noexcept nogil
    Py_ssize_t dp_nh_stripe_count() noexcept nogil
    void *dp_nh_load_ptr(void **pp) noexcept nogil
    bint dp_nh_publish(void **pp, void *p) noexcept nogil
    void dp_nh_share(object op) noexcept
    void dp_nh_leave(uint64_t *gate) noexcept nogil
    void dp_nh_lock(dp_nh_mutex *m) noexcept
    void dp_nh_unlock(dp_nh_mutex *m) noexcept nogil
    void dp_nh_exclude(uint64_t *gate) noexcept nogil
    void dp_nh_admit(uint64_t *gate) noexcept nogil
    void dp_nh_inc(uint64_t *p) noexcept nogil
    uint64_t dp_nh_load(uint64_t *p) noexcept nogil
    int dp_nh_load_int(int *p) noexcept nogil
    void dp_nh_add_double(double *p, double v) noexcept nogil

__all__ = [
    "MAX_SCHEMA",
    "MIN_SCHEMA",
    "NativeHistogram",
    "encode_histogram",
    "merge_states",
    "pick_schema",
    "spans_and_deltas",
]

MIN_SCHEMA = -4
MAX_SCHEMA = 8
# Entry kinds of the multiprocess file (``_native_files``).
cdef enum:
    _ZERO = 0
    _POS = 1
    _NEG = 2
    _MARK = 3
    _UNMARKED = -100
    _MIN_SCHEMA = -4  # MIN_SCHEMA, for C comparisons
_KINDS = ("z", "p", "n", "m")
cdef double _DBL_MAX = sys.float_info.max
cdef double _INF = float("inf")
cdef double _LN2_INV = 1.0 / log(2.0)

# client_golang's boundary table, one C array per schema 1..8 (schema <= 0 needs none).
cdef double *_TABLE[9]
cdef double *_table_block = <double *> PyMem_Malloc(511 * sizeof(double))
if _table_block == NULL:
    raise MemoryError()


def _load_table():
    cdef Py_ssize_t s, j, at = 0
    for s in range(9):
        _TABLE[s] = _table_block + at
        for j in range(len(BOUNDS[s])):
            _table_block[at] = BOUNDS[s][j]
            at += 1


_load_table()
dp_nh_set_stripes(os.cpu_count() or 1)
#: Stripes a contended part spreads over on this build (0: a GIL build, parts never stripe).
STRIPES = dp_nh_stripe_count()


cdef double _go_log2(double x) noexcept:
    # Go's math.Log2 (see the twin): frexp, then the natural log of the fraction.
    cdef int e
    cdef double frac = frexp(x, &e)
    if frac == 0.5:
        return <double> (e - 1)
    return log(frac) * _LN2_INV + e


def pick_schema(factor):
    """The lowest schema whose growth factor ``2**(2**-schema)`` does not exceed ``factor``."""
    cdef double f = float(factor)
    cdef double fl
    if not f > 1:
        raise ValueError(f"native histogram bucket factor must be > 1, not {f!r}")
    if f == _INF:
        return MIN_SCHEMA
    fl = floor(_go_log2(_go_log2(f)))
    if fl <= -MAX_SCHEMA:
        return MAX_SCHEMA
    if fl >= -MIN_SCHEMA:
        return MIN_SCHEMA
    return -<int> fl


cdef inline int64_t _floor_shift(int64_t a, int shift) noexcept:
    # floor(a / 2**shift) whatever the compiler does with a negative >>.
    cdef int64_t d = (<int64_t> 1) << shift
    if a >= 0:
        return a // d
    return -((-a + d - 1) // d)


cdef inline int32_t _key(double v, int schema) noexcept:
    # The bucket key of v (> 0, not NaN) at schema.
    cdef bint inf = v == _INF
    cdef int e
    cdef double frac
    cdef const double *bounds
    cdef int64_t key
    cdef Py_ssize_t lo = 0, hi, mid
    if inf:
        v = _DBL_MAX
    frac = frexp(v, &e)
    if schema > 0:
        # First boundary >= frac (sort.SearchFloat64s), then whole powers of two.
        bounds = _TABLE[schema]
        hi = (<Py_ssize_t> 1) << schema
        while lo < hi:
            mid = (lo + hi) >> 1
            if bounds[mid] < frac:
                lo = mid + 1
            else:
                hi = mid
        key = lo + (<int64_t> (e - 1) << schema)
    else:
        key = e - 1 if frac == 0.5 else e
        key = _floor_shift(key + ((<int64_t> 1) << -schema) - 1, -schema)
    if inf:
        key += 1
    return <int32_t> key


cdef struct _Side:
    int32_t *keys
    uint64_t *counts
    # Populated buckets and room: at most the keys' range (about 540,000 a side at schema 8),
    # so 32 bits each; the 8 bytes this saves hold the part's stripes pointer.
    int32_t n
    int32_t cap


cdef struct _Addrs:
    # Multiprocess: where the file entry of each bucket (at the marked schema) is, in step with
    # the side's keys while n == the side's n: 0 not looked up yet, 1 none (the files failed;
    # the observation stays in process), else the address of the entry's value double.
    size_t zero
    size_t *pos
    size_t *neg
    Py_ssize_t npos
    Py_ssize_t nneg


cdef inline Py_ssize_t _lower(_Side *side, int32_t key) noexcept nogil:
    # The index of the first bucket whose key is not below key (side.n if none).
    cdef Py_ssize_t lo = 0, hi = side.n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if side.keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef int _add(_Side *side, int32_t key) noexcept:
    # Count one at key: 1 if a bucket was created, 0 if it existed, -1 if out of memory
    # (the observation is then dropped: instrumentation never raises into the app).
    cdef Py_ssize_t lo = _lower(side, key), cap
    cdef int32_t *nkeys
    cdef uint64_t *ncounts
    if lo < side.n and side.keys[lo] == key:
        side.counts[lo] += 1
        return 0
    if side.n == side.cap:
        # Four buckets at a time: a child's arrays stay within 36 bytes of 12 bytes per populated
        # bucket (pymalloc hands out 16-byte granules anyway), and a new bucket is rare next to
        # observations into existing ones (``python -m benchmarks.bench_native --memory``).
        cap = (side.n + 4) & ~3
        nkeys = <int32_t *> PyMem_Realloc(side.keys, cap * sizeof(int32_t))
        if nkeys == NULL:
            return -1
        side.keys = nkeys
        ncounts = <uint64_t *> PyMem_Realloc(side.counts, cap * sizeof(uint64_t))
        if ncounts == NULL:
            return -1
        side.counts = ncounts
        side.cap = cap
    memmove(&side.keys[lo + 1], &side.keys[lo], (side.n - lo) * sizeof(int32_t))
    memmove(&side.counts[lo + 1], &side.counts[lo], (side.n - lo) * sizeof(uint64_t))
    side.keys[lo] = key
    side.counts[lo] = 1
    side.n += 1
    return 1


cdef void _halve(_Side *side) noexcept:
    # In place: keys map to ceil(key / 2), which keeps them sorted; equal ones merge.
    cdef Py_ssize_t i, j = 0
    cdef int32_t k
    for i in range(side.n):
        k = side.keys[i]
        k = (k + 1) // 2 if k > 0 else -((-k) // 2)
        if j > 0 and side.keys[j - 1] == k:
            side.counts[j - 1] += side.counts[i]
        else:
            side.keys[j] = k
            side.counts[j] = side.counts[i]
            j += 1
    side.n = j


cdef int _copy(_Side *side, _Side *out) except -1:
    # The side's buckets into out's own arrays (freed by _items_from), each count read once.
    cdef Py_ssize_t i, n = side.n
    out.n = 0
    out.keys = <int32_t *> PyMem_Malloc((n + 1) * sizeof(int32_t))
    out.counts = <uint64_t *> PyMem_Malloc((n + 1) * sizeof(uint64_t))
    if out.keys == NULL or out.counts == NULL:
        PyMem_Free(out.keys)
        PyMem_Free(out.counts)
        out.keys = NULL
        out.counts = NULL
        raise MemoryError()
    for i in range(n):
        out.keys[i] = side.keys[i]
        out.counts[i] = dp_nh_load(&side.counts[i])
    out.n = n
    return 0


cdef int _merge(_Side *into, _Side *other) except -1:
    # Add other's buckets (a copy, same schema) to into's (a copy): one sorted run of both.
    cdef Py_ssize_t i = 0, j = 0, k = 0, n = into.n + other.n
    cdef int32_t *keys
    cdef uint64_t *counts
    if other.n == 0:
        return 0
    keys = <int32_t *> PyMem_Malloc((n + 1) * sizeof(int32_t))
    counts = <uint64_t *> PyMem_Malloc((n + 1) * sizeof(uint64_t))
    if keys == NULL or counts == NULL:
        PyMem_Free(keys)
        PyMem_Free(counts)
        raise MemoryError()
    while i < into.n or j < other.n:
        if j == other.n or (i < into.n and into.keys[i] < other.keys[j]):
            keys[k] = into.keys[i]
            counts[k] = into.counts[i]
            i += 1
        elif i == into.n or other.keys[j] < into.keys[i]:
            keys[k] = other.keys[j]
            counts[k] = other.counts[j]
            j += 1
        else:
            keys[k] = into.keys[i]
            counts[k] = into.counts[i] + other.counts[j]
            i += 1
            j += 1
        k += 1
    _free(into)
    into.keys = keys
    into.counts = counts
    into.n = k
    into.cap = n + 1
    return 0


cdef list _items_from(_Side *copy):
    # Python objects are made after the mutex is released: a collection they trigger may
    # run code that observes into this very part.
    cdef Py_ssize_t i
    out = [None] * copy.n
    for i in range(copy.n):
        out[i] = (copy.keys[i], copy.counts[i])
    return out


cdef void _free(_Side *copy) noexcept:
    PyMem_Free(copy.keys)
    PyMem_Free(copy.counts)
    copy.keys = NULL
    copy.counts = NULL


cdef size_t *_addr_slot(_Side *side, size_t **addrs, Py_ssize_t *n, int32_t key) except? NULL:
    # The address slot of key's bucket. The slots are in step with the side's buckets, or
    # there are none (n == 0: just marked, or a write failed): the side then holds one bucket
    # more (the one this observation created, at key) or every slot is looked up again.
    cdef Py_ssize_t lo = _lower(side, key)
    cdef size_t *grown
    if lo == side.n or side.keys[lo] != key:
        return NULL  # not counted (out of memory)
    if n[0] != side.n:
        grown = <size_t *> PyMem_Realloc(addrs[0], side.cap * sizeof(size_t))
        if grown == NULL:
            raise MemoryError()
        addrs[0] = grown
        if n[0] + 1 == side.n:
            memmove(&grown[lo + 1], &grown[lo], (n[0] - lo) * sizeof(size_t))
            grown[lo] = 0
        else:
            memset(grown, 0, side.n * sizeof(size_t))
        n[0] = side.n
    return &addrs[0][lo]


cdef class _Mp:
    """A part's multiprocess write-through: its files, its entries' key prefix, their addresses."""

    cdef object files
    cdef str prefix
    cdef _Addrs a

    def __dealloc__(self):
        PyMem_Free(self.a.pos)
        PyMem_Free(self.a.neg)


cdef class NativeHistogram:
    """Zero count and sparse bucket counts by key, on both sides of zero."""

    # Packed (``python -m benchmarks.bench_native --memory``): the free-threaded fields sit
    # where padding was, and the multiprocess state is an object of its own, made by attach().
    cdef int _schema
    cdef int _marked  # multiprocess: the schema this process' file was last marked at; _UNMARKED after a fork
    cdef int32_t _max
    # Free-threaded builds (the module docstring): the mutex of the rare paths and the readers,
    # and the gate (observers inside it, and the EXCLUSIVE bit). Unused under the GIL.
    cdef dp_nh_mutex _mutex
    cdef double _zt
    cdef uint64_t _zero
    cdef uint64_t _gate
    cdef _Side _pos
    cdef _Side _neg
    cdef _Mp _mp  # None until attached (multiprocess write-through)
    # Free-threaded builds: NULL, or (once observers met in the gate) STRIPES owned references
    # to parts of the same configuration that threads observe into instead; reads merge them.
    cdef void *_stripes

    def __cinit__(self, schema, zero_threshold, max_buckets):
        schema, zero_threshold, max_buckets = _check_config(schema, zero_threshold, max_buckets)
        self._schema = schema
        self._zt = zero_threshold
        self._max = max_buckets
        self._marked = _UNMARKED

    def __dealloc__(self):
        cdef PyObject **st = <PyObject **> self._stripes
        cdef Py_ssize_t i
        if st != NULL:
            self._stripes = NULL
            for i in range(dp_nh_stripe_count()):
                Py_DECREF(<object> st[i])
            PyMem_Free(st)
        PyMem_Free(self._pos.keys)
        PyMem_Free(self._pos.counts)
        PyMem_Free(self._neg.keys)
        PyMem_Free(self._neg.counts)

    cdef void _observe(self, double v) noexcept:
        cdef PyObject **st
        if v != v:  # NaN: in no bucket
            return
        if not DP_NH_FT:  # the GIL makes the whole observation one step
            self._observe_locked(v)
            return
        st = <PyObject **> dp_nh_load_ptr(&self._stripes)
        if st != NULL:  # a hot part: this thread's stripe (its gate and counts are its own)
            (<NativeHistogram> st[dp_nh_slot()])._observe_here(v)
            return
        if self._observe_here(v) and self._mp is None:
            self._stripe_now()

    cdef inline bint _observe_here(self, double v) noexcept:
        # Free-threaded: count v in this very part; True if another observer was inside the
        # gate at the same time (contention).
        cdef int entered = dp_nh_enter(&self._gate)
        if entered:
            if self._observe_shared(v):
                dp_nh_leave(&self._gate)
                return entered == 2
            dp_nh_leave(&self._gate)
        self._exclude()
        self._observe_locked(v)
        self._admit()
        return entered == 2

    cdef void _stripe_now(self) noexcept:
        # Contention seen (free-threaded, single-process): spread later observations over
        # stripes, parts of this part's configuration at its schema now. Memory, or any
        # failure, leaves the part as it is (it still counts every observation).
        cdef Py_ssize_t i, n = dp_nh_stripe_count()
        cdef PyObject **st
        if n == 0 or dp_nh_load_ptr(&self._stripes) != NULL:
            return
        try:
            parts = [NativeHistogram(dp_nh_load_int(&self._schema), self._zt, self._max) for i in range(n)]
        except BaseException:  # instrumentation never breaks the app
            return
        st = <PyObject **> PyMem_Malloc(n * sizeof(PyObject *))
        if st == NULL:
            return
        for i in range(n):
            Py_INCREF(parts[i])
            st[i] = <PyObject *> parts[i]
        if not dp_nh_publish(&self._stripes, st):  # another thread's stripes won
            for i in range(n):
                Py_DECREF(<object> st[i])
            PyMem_Free(st)
            return
        dp_nh_share(self)

    cdef list _parts(self):
        # This part's stripes (empty unless it striped).
        cdef PyObject **st = <PyObject **> dp_nh_load_ptr(&self._stripes)
        cdef Py_ssize_t i
        if st == NULL:
            return []
        return [<object> st[i] for i in range(dp_nh_stripe_count())]

    def _stripe(self):
        """Stripe now, as contention would (tests); True if the part is striped."""
        if self._mp is None:
            self._stripe_now()
        return self._striped()

    def _striped(self):
        """True once contention made this part stripe (free-threaded builds only)."""
        return dp_nh_load_ptr(&self._stripes) != NULL

    cdef inline bint _observe_shared(self, double v) noexcept:
        # Free-threaded, inside the gate (the shape stays still): count v if its bucket
        # exists and the part is not due to halve; False sends v to the rare path.
        # Attached, the bucket's file entry must be known too (``_write`` looks it up).
        cdef _Side *side
        cdef int32_t key
        cdef Py_ssize_t lo
        cdef _Addrs *a = NULL if self._mp is None else &self._mp.a
        cdef size_t addr
        if self._max and self._pos.n + self._neg.n > self._max and self._schema > _MIN_SCHEMA:
            return False  # still too wide after the last halving: this observation halves again
        if a != NULL and self._marked != self._schema:
            return False
        if v > self._zt:
            side = &self._pos
            key = _key(v, self._schema)
        elif v < -self._zt:
            side = &self._neg
            key = _key(-v, self._schema)
        else:
            if a != NULL:
                addr = a.zero
                if addr == 0:
                    return False
                if addr != 1:
                    dp_nh_add_double(<double *> addr, 1.0)
            dp_nh_inc(&self._zero)
            return True
        lo = _lower(side, key)
        if lo < side.n and side.keys[lo] == key:
            if a != NULL:
                if side == &self._pos:
                    addr = a.pos[lo] if a.npos == side.n else 0
                else:
                    addr = a.neg[lo] if a.nneg == side.n else 0
                if addr == 0:
                    return False
                if addr != 1:
                    dp_nh_add_double(<double *> addr, 1.0)
            dp_nh_inc(&side.counts[lo])
            return True
        return False

    cdef inline void _exclude(self) noexcept:
        # The rare paths' entry (free-threaded: mutex, then no observer in the gate).
        dp_nh_lock(&self._mutex)
        dp_nh_exclude(&self._gate)

    cdef inline void _admit(self) noexcept:
        dp_nh_admit(&self._gate)
        dp_nh_unlock(&self._mutex)

    cdef inline void _observe_locked(self, double v) noexcept:
        cdef int schema = self._schema
        cdef int32_t key = 0
        cdef int kind
        if v > self._zt:
            key = _key(v, schema)
            _add(&self._pos, key)
            kind = _POS
        elif v < -self._zt:
            key = _key(-v, schema)
            _add(&self._neg, key)
            kind = _NEG
        else:
            self._zero += 1
            kind = _ZERO
        if self._mp is not None:  # the one branch multiprocess mode costs when off
            self._write(kind, schema, key)
        # After every observation, zero bucket included, and once: a histogram still too
        # wide after halving halves again on the next one (client_golang's limitBuckets).
        if self._max and self._pos.n + self._neg.n > self._max and self._schema > _MIN_SCHEMA:
            self._schema -= 1
            _halve(&self._pos)
            _halve(&self._neg)
            if self._mp is not None:
                self._mark_noexcept()

    # --- multiprocess mode (``_native_files``; the rules are the twin's) ------------

    def attach(self, files, str prefix):
        """Write every observation through to ``files`` (a ``NativeFiles``), under keys starting ``prefix``."""
        self._exclude()
        try:
            mp = _Mp()
            mp.files = files
            mp.prefix = prefix
            self._mp = mp
            files.track(self)
            self._mark()
        finally:
            self._admit()

    cdef size_t _entry(self, int kind, int a, int32_t b) except? 0:
        # The address of an entry's value double in this process' file; 0 if files fail.
        # (Once per bucket and schema: the address is kept in the part's _Mp.)
        cdef unsigned char[::1] view
        if kind == _ZERO:
            text = f'{self._mp.prefix}"z", {_json_float(self._zt)}, 0]'
        else:
            text = f'{self._mp.prefix}"{_KINDS[kind]}", {a}, {b}]'
        slot = self._mp.files.slot(text)
        if slot is None:
            return 0
        view = slot[0]  # a mapping the files never close
        return <size_t> &view[0] + <size_t> slot[1]

    cdef void _mark(self) except *:
        cdef size_t addr
        cdef _Addrs *a = &self._mp.a
        self._marked = self._schema
        # The buckets' entries at this schema are looked up as observations reach them.
        a.npos = 0
        a.nneg = 0
        a.zero = 0
        addr = self._entry(_MARK, self._schema, 0)
        if addr:
            (<double *> addr)[0] = 1.0
        addr = self._entry(_ZERO, 0, 0)
        a.zero = addr if addr else 1

    cdef void _mark_noexcept(self) noexcept:
        try:
            self._mark()
        except BaseException:  # instrumentation never breaks the app
            pass

    cdef size_t *_slot(self, int kind, int32_t key) except? NULL:
        if kind == _ZERO:
            return &self._mp.a.zero
        if kind == _POS:
            return _addr_slot(&self._pos, &self._mp.a.pos, &self._mp.a.npos, key)
        return _addr_slot(&self._neg, &self._mp.a.neg, &self._mp.a.nneg, key)

    cdef void _write(self, int kind, int schema, int32_t key) noexcept:
        # key has just been counted at schema (rare paths; under the GIL, every observation).
        cdef size_t addr
        cdef size_t *slot
        try:
            if self._marked != schema:
                self._mark()
            slot = self._slot(kind, key)
            addr = slot[0] if slot != NULL else 0
            if addr == 0:
                addr = self._entry(kind, 0 if kind == _ZERO else schema, key)
                # _entry runs Python code: under the GIL another thread may have added a bucket
                # (the slots moved) or halved the part (key is another bucket's now) meanwhile.
                if self._marked == schema:
                    slot = self._slot(kind, key)
                    if slot != NULL:
                        slot[0] = addr if addr else 1
            if addr > 1:
                (<double *> addr)[0] += 1.0  # this child's entry: no other writer meanwhile
        except BaseException:  # the observation stays in process; every slot is looked up again
            self._mp.a.npos = 0
            self._mp.a.nneg = 0

    def _forked(self):
        # A forked child (one thread): the parent's counts stay the parent's; ours start at 0,
        # in files of our own. A gate or mutex the fork caught mid-use belonged to threads the
        # child does not have.
        for part in self._parts():
            part._forked()
        self._gate = 0
        memset(&self._mutex, 0, sizeof(dp_nh_mutex))
        self._zero = 0
        self._pos.n = 0
        self._neg.n = 0
        self._marked = _UNMARKED
        if self._mp is not None:  # the parent's file entries are the parent's
            self._mp.a.zero = 0
            self._mp.a.npos = 0
            self._mp.a.nneg = 0

    def observe(self, double amount):
        self._observe(amount)

    @property
    def schema(self):
        if dp_nh_load_ptr(&self._stripes) != NULL:
            return self.state()[0]  # the stripes' merge
        return dp_nh_load_int(&self._schema)

    @property
    def zero_threshold(self):
        return self._zt

    @property
    def max_buckets(self):
        return self._max

    @property
    def zero_count(self):
        cdef uint64_t acc = dp_nh_load(&self._zero)
        for part in self._parts():
            acc += (<NativeHistogram> part).zero_count
        return acc

    @property
    def count(self):
        """Observations counted (NaN is not)."""
        cdef uint64_t acc
        dp_nh_lock(&self._mutex)
        acc = self._count_locked()
        dp_nh_unlock(&self._mutex)
        for part in self._parts():
            acc += (<NativeHistogram> part).count
        return acc

    cdef uint64_t _count_locked(self) noexcept:
        cdef uint64_t acc = dp_nh_load(&self._zero)
        cdef Py_ssize_t i
        for i in range(self._pos.n):
            acc += dp_nh_load(&self._pos.counts[i])
        for i in range(self._neg.n):
            acc += dp_nh_load(&self._neg.counts[i])
        return acc

    cdef int _snapshot(self, int *schema, uint64_t *zero, _Side *pos, _Side *neg) except -1:
        # The shape and every count (read under the mutex: no shape change meanwhile), and a
        # striped part's stripes merged in (each read under its own mutex, at the lowest
        # schema among them, and halved as one part would be past its bucket limit).
        cdef int s2
        cdef uint64_t z2
        cdef _Side p2, n2
        self._snapshot_here(schema, zero, pos, neg)
        parts = self._parts()
        if not parts:
            return 0
        try:
            for part in parts:
                (<NativeHistogram> part)._snapshot_here(&s2, &z2, &p2, &n2)
                try:
                    while schema[0] > s2:
                        schema[0] -= 1
                        _halve(pos)
                        _halve(neg)
                    while s2 > schema[0]:
                        s2 -= 1
                        _halve(&p2)
                        _halve(&n2)
                    zero[0] += z2
                    _merge(pos, &p2)
                    _merge(neg, &n2)
                finally:
                    _free(&p2)
                    _free(&n2)
            while self._max and pos.n + neg.n > self._max and schema[0] > _MIN_SCHEMA:
                schema[0] -= 1
                _halve(pos)
                _halve(neg)
        except BaseException:
            _free(pos)
            _free(neg)
            raise
        return 0

    cdef int _snapshot_here(self, int *schema, uint64_t *zero, _Side *pos, _Side *neg) except -1:
        pos.keys = NULL
        pos.counts = NULL
        neg.keys = NULL
        neg.counts = NULL
        dp_nh_lock(&self._mutex)
        try:
            schema[0] = self._schema
            zero[0] = dp_nh_load(&self._zero)
            _copy(&self._pos, pos)
            _copy(&self._neg, neg)
        except BaseException:
            _free(pos)
            raise
        finally:
            dp_nh_unlock(&self._mutex)
        return 0

    def positive(self):
        """Populated positive buckets: ``(key, count)`` by increasing key."""
        return self.state()[3]

    def negative(self):
        """Populated negative buckets (key of ``abs(v)``): ``(key, count)`` by increasing key."""
        return self.state()[4]

    def state(self):
        """``(schema, zero_threshold, zero_count, positive, negative)``, read at one instant."""
        cdef int schema
        cdef uint64_t zero
        cdef _Side pos, neg
        self._snapshot(&schema, &zero, &pos, &neg)
        try:
            return schema, self._zt, zero, _items_from(&pos), _items_from(&neg)
        finally:
            _free(&pos)
            _free(&neg)

    def reset(self):
        """Forget every observation (a forked child starts from zero); the schema stays."""
        for part in self._parts():
            part.reset()
        self._exclude()
        self._zero = 0
        self._pos.n = 0
        self._neg.n = 0
        if self._mp is not None:  # the slots' buckets are gone (the entries stay)
            self._mp.a.npos = 0
            self._mp.a.nneg = 0
        self._admit()


cdef str _json_float(double v):
    return json.dumps(v)


def _check_config(schema, zero_threshold, max_buckets):
    if type(schema) is not int or not MIN_SCHEMA <= schema <= MAX_SCHEMA:
        raise ValueError(f"native histogram schema must be an int in -4..8, not {schema!r}")
    zero_threshold = float(zero_threshold)
    if not zero_threshold >= 0 or zero_threshold == _INF:
        raise ValueError(f"native histogram zero threshold must be >= 0 and finite, not {zero_threshold!r}")
    if type(max_buckets) is not int or max_buckets < 0 or max_buckets > 0x7FFFFFFF:
        raise ValueError(f"native histogram max buckets must be an int >= 0, not {max_buckets!r}")
    return schema, zero_threshold, max_buckets


def merge_states(states):
    """One state from several (processes'): every one brought to the lowest schema, then added."""
    states = list(states)
    if not states:
        raise ValueError("nothing to merge")
    schema = min(int(s[0]) for s in states)
    zt = float(states[0][1])
    zero = 0
    pos = {}
    neg = {}
    for s_schema, s_zt, s_zero, s_pos, s_neg in states:
        if float(s_zt) != zt:
            raise ValueError("native histograms with different zero thresholds cannot be merged")
        zero += int(s_zero)
        shift = int(s_schema) - schema
        for src, dst in ((s_pos, pos), (s_neg, neg)):
            for key, count in src:
                k = -((-int(key)) >> shift)
                dst[k] = dst.get(k, 0) + int(count)
    return schema, zt, zero, sorted(pos.items()), sorted(neg.items())


def spans_and_deltas(buckets):
    """Protobuf's form of populated buckets: ``[(offset, length)]`` spans and count deltas."""
    cdef list spans = []
    cdef list deltas = []
    cdef int64_t prev = 0, nxt = 0, gap, key, count
    cdef Py_ssize_t n = 0, j
    for item in buckets:
        key = item[0]
        count = item[1]
        gap = key - nxt
        if n == 0 or gap > 2:
            spans.append([gap, 0])
        else:
            for j in range(gap):
                spans[len(spans) - 1][1] += 1
                deltas.append(-prev)
                prev = 0
        spans[len(spans) - 1][1] += 1
        deltas.append(count - prev)
        prev = count
        nxt = key + 1
        n += 1
    return [(s[0], s[1]) for s in spans], deltas


# --- protobuf wire format (io.prometheus.client, proto2) ----------------------
#
# One growing C buffer per message: no Python object per varint or per bucket.

include "dp_api.pxi"

ctypedef dp_buf _Buf  # the protobuf writer (``_expo_c``) hands its own scratch buffer in


cdef int _reserve(_Buf *b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef unsigned char *p
    if b.n + extra <= b.cap:
        return 0
    cap = b.cap * 2 + extra + 64
    p = <unsigned char *> PyMem_Realloc(b.p, cap)
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef inline void _put_varint(_Buf *b, uint64_t n) noexcept:
    # A varint into room the caller reserved.
    while n > 0x7F:
        b.p[b.n] = <unsigned char> ((n & 0x7F) | 0x80)
        b.n += 1
        n >>= 7
    b.p[b.n] = <unsigned char> n
    b.n += 1


cdef inline int _varint(_Buf *b, uint64_t n) except -1:
    _reserve(b, 10)
    _put_varint(b, n)
    return 0


cdef inline uint64_t _zigzag(int64_t n) noexcept:
    return ((<uint64_t> n) << 1) ^ (<uint64_t> (n >> 63))


cdef inline int _double(_Buf *b, int field, double v) except -1:
    _varint(b, (field << 3) | 1)
    _reserve(b, 8)
    memcpy(b.p + b.n, &v, 8)  # little-endian hosts only (checked at import)
    b.n += 8
    return 0


cdef inline int _raw(_Buf *b, const unsigned char *data, Py_ssize_t n) except -1:
    _reserve(b, n)
    memcpy(b.p + b.n, data, n)
    b.n += n
    return 0


cdef int _field_bytes(_Buf *b, int field, bytes data) except -1:
    cdef Py_ssize_t n = len(data)
    _varint(b, (field << 3) | 2)
    _varint(b, n)
    _raw(b, <const unsigned char *> (<char *> data), n)
    return 0


cdef inline Py_ssize_t _varint_len(uint64_t n) noexcept:
    cdef Py_ssize_t k = 1
    while n > 0x7F:
        n >>= 7
        k += 1
    return k


cdef int _side(_Buf *b, int span_field, int delta_field, const int32_t *keys, const uint64_t *counts,
               Py_ssize_t n) except -1:
    # Spans (a gap of one or two empty buckets stays inside a span, as client_golang cuts
    # them), then the packed deltas, in one pass over the arrays: room for the worst case is
    # reserved once, and the deltas' length (one byte unless they take 128 or more) is
    # written in front of them once they are written.
    cdef Py_ssize_t i, j, at, packed, lenlen
    cdef int64_t prev = 0, nxt = 0, gap, offset
    cdef uint32_t length
    cdef uint64_t z
    if n == 0:
        return 0
    # A span: at most 19 bytes, one per bucket at most; a delta: at most 10 bytes, three per
    # bucket at most (two zero counts of a gap inside a span); the deltas' tag and length: 6.
    _reserve(b, 49 * n + 8)
    i = 0
    while i < n:  # one span per run
        offset = keys[i] - nxt if i > 0 else keys[i]
        length = 1
        while i + 1 < n and keys[i + 1] - keys[i] - 1 <= 2:
            length += <uint32_t> (keys[i + 1] - keys[i])
            i += 1
        z = _zigzag(offset)
        _put_varint(b, (span_field << 3) | 2)
        _put_varint(b, 2 + _varint_len(z) + _varint_len(length))
        _put_varint(b, 1 << 3)
        _put_varint(b, z)
        _put_varint(b, 2 << 3)
        _put_varint(b, length)
        nxt = keys[i] + 1
        i += 1
    # Deltas, zero counts for the gaps inside spans included.
    _put_varint(b, (delta_field << 3) | 2)
    at = b.n
    b.n += 1
    for i in range(n):
        if i > 0:
            gap = keys[i] - keys[i - 1] - 1
            if gap <= 2:
                for j in range(gap):
                    _put_varint(b, _zigzag(-prev))
                    prev = 0
        _put_varint(b, _zigzag(<int64_t> counts[i] - prev))
        prev = <int64_t> counts[i]
    packed = b.n - at - 1
    lenlen = _varint_len(packed)
    if lenlen > 1:
        memmove(b.p + at + lenlen, b.p + at + 1, packed)
    b.n = at
    _put_varint(b, packed)
    b.n += packed
    return 0


cdef int _side_from_list(_Buf *b, int span_field, int delta_field, list buckets) except -1:
    cdef Py_ssize_t i, n = len(buckets)
    cdef int32_t *keys = <int32_t *> PyMem_Malloc((n + 1) * sizeof(int32_t))
    cdef uint64_t *counts = <uint64_t *> PyMem_Malloc((n + 1) * sizeof(uint64_t))
    if keys == NULL or counts == NULL:
        PyMem_Free(keys)
        PyMem_Free(counts)
        raise MemoryError()
    try:
        for i in range(n):
            keys[i] = buckets[i][0]
            counts[i] = buckets[i][1]
        _side(b, span_field, delta_field, keys, counts, n)
    finally:
        PyMem_Free(keys)
        PyMem_Free(counts)
    return 0


cdef bint _little_endian():
    cdef uint64_t one = 1
    return (<unsigned char *> &one)[0] == 1


if not _little_endian():  # pragma: no cover
    raise ImportError("the compiled protobuf writer assumes a little-endian host")


cdef int _native_part(_Buf *b, NativeHistogram nh, uint64_t *count) except -1:
    # The native fields, and the observations they hold (zero bucket included): the message's
    # sample_count (see encode_histogram), from the very counts written. Under the GIL the
    # part's own arrays are read (nothing changes them meanwhile); free-threaded, a snapshot
    # of them, so that each count is read once (observers keep counting while we write).
    cdef Py_ssize_t i
    cdef uint64_t acc, zero
    cdef int schema
    cdef _Side pos, neg
    if DP_NH_FT:
        nh._snapshot(&schema, &zero, &pos, &neg)
    else:
        schema = nh._schema
        zero = nh._zero
        pos = nh._pos
        neg = nh._neg
    try:
        acc = zero
        for i in range(pos.n):
            acc += pos.counts[i]
        for i in range(neg.n):
            acc += neg.counts[i]
        count[0] = acc
        _varint(b, 5 << 3)
        _varint(b, _zigzag(schema))
        _double(b, 6, nh._zt)
        _varint(b, 7 << 3)
        _varint(b, zero)
        if pos.n == 0 and neg.n == 0 and zero == 0 and nh._zt == 0:
            # An empty native histogram with a zero threshold of 0: a no-op span says
            # "native" (see the twin).
            _raw(b, <const unsigned char *> b"\x62\x04\x08\x00\x10\x00", 6)
        _side(b, 9, 10, neg.keys, neg.counts, neg.n)
        _side(b, 12, 13, pos.keys, pos.counts, pos.n)
    finally:
        if DP_NH_FT:
            _free(&pos)
            _free(&neg)
    return 0


def encode_histogram(count, total, bounds, cumulative, exemplars, native, created):
    """The body of an ``io.prometheus.client.Histogram`` message (see the twin)."""
    cdef _Buf b
    cdef _Buf nb  # the native fields, written first: their count is the message's
    cdef Py_ssize_t i, n = len(bounds)
    cdef double bound
    cdef uint64_t c, total_count
    cdef bint has_native = native is not None
    cdef bytes ex
    b.p = NULL
    b.n = 0
    b.cap = 0
    nb.p = NULL
    nb.n = 0
    nb.cap = 0
    try:
        if has_native:
            if type(native) is NativeHistogram:
                _native_part(&nb, <NativeHistogram> native, &total_count)
            else:
                schema, zt, zero, pos, neg = native
                total_count = <uint64_t> (int(zero) + sum([int(k[1]) for k in pos]) + sum([int(k[1]) for k in neg]))
                _varint(&nb, 5 << 3)
                _varint(&nb, _zigzag(schema))
                _double(&nb, 6, zt)
                _varint(&nb, 7 << 3)
                _varint(&nb, zero)
                if not pos and not neg and not zero and not zt:
                    _raw(&nb, <const unsigned char *> b"\x62\x04\x08\x00\x10\x00", 6)
                _side_from_list(&nb, 9, 10, list(neg))
                _side_from_list(&nb, 12, 13, list(pos))
        else:
            total_count = <uint64_t> <int64_t> count
        _reserve(&b, 32 * n + 64 + nb.n)
        _varint(&b, 1 << 3)
        _varint(&b, total_count)
        if total is not None:
            _double(&b, 2, total)
        for i in range(n):
            bound = bounds[i]
            if bound == _INF:
                continue
            c = <uint64_t> <int64_t> cumulative[i]
            if has_native and c > total_count:  # read a moment later than the native part
                c = total_count
            ex = exemplars[i] if exemplars else None
            _varint(&b, (3 << 3) | 2)
            _varint(&b, 1 + _varint_len(c) + 9 + (0 if ex is None else 1 + _varint_len(len(ex)) + len(ex)))
            _varint(&b, 1 << 3)
            _varint(&b, c)
            _double(&b, 2, bound)
            if ex is not None:
                _field_bytes(&b, 3, ex)
        if has_native:
            _raw(&b, nb.p, nb.n)
        if created is not None:
            _field_bytes(&b, 15, created)
        return PyBytes_FromStringAndSize(<char *> b.p, b.n)
    finally:
        PyMem_Free(b.p)
        PyMem_Free(nb.p)


# --- C entry points for the cells and the protobuf writer --------------------------


cdef void _api_observe(object cell, double amount) noexcept:
    (<NativeHistogram> cell)._observe(amount)


cdef int _api_encode(object native, dp_buf *b, unsigned long long *count) except -1:
    # The caller checked the type (``type(native) is NativeHistogram``).
    cdef uint64_t acc
    _native_part(b, <NativeHistogram> native, &acc)
    count[0] = acc
    return 0


cdef dp_native_api _api
_api.observe = _api_observe
_api.encode = _api_encode
C_API = PyCapsule_New(<void *> &_api, "django_prometheus._core._native_c.C_API", NULL)
