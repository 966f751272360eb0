# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled native (sparse exponential) histograms and their protobuf bytes.

The pure-Python twin is ``_native_py.py`` (the rules are written out there); keep
both in step. Buckets are two sorted arrays per side (keys, counts), so a child
costs 12 bytes per populated bucket. An observation is a few C operations under
the GIL, which no other Python thread can interrupt; on free-threaded builds it
runs in the cell's critical section (a per-object lock Python provides, free when
uncontended), because growing and halving the arrays cannot be a single atomic
step.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.pycapsule cimport PyCapsule_New
from libc.math cimport floor, frexp, log
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove

import json
import struct
import sys

from ._native_bounds import BOUNDS

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
    Py_ssize_t n
    Py_ssize_t cap


cdef int _add(_Side *side, int32_t key) noexcept:
    # Count one at key: 1 if a bucket was created, 0 if it existed, -1 if out of memory
    # (the observation is then dropped: instrumentation never raises into the app).
    cdef Py_ssize_t lo = 0, hi = side.n, mid, cap
    cdef int32_t *keys = side.keys
    cdef int32_t *nkeys
    cdef uint64_t *ncounts
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < side.n and keys[lo] == key:
        side.counts[lo] += 1
        return 0
    if side.n == side.cap:
        # Grow by a quarter (plus 4): a child's memory stays close to 12 bytes per bucket.
        cap = side.cap + side.cap // 4 + 4
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


cdef list _items(_Side *side):
    cdef Py_ssize_t i
    out = [None] * side.n
    for i in range(side.n):
        out[i] = (side.keys[i], side.counts[i])
    return out


cdef class NativeHistogram:
    """Zero count and sparse bucket counts by key, on both sides of zero."""

    cdef int _schema
    cdef double _zt
    cdef Py_ssize_t _max
    cdef uint64_t _zero
    cdef _Side _pos
    cdef _Side _neg
    # Multiprocess mode (``attach``): this process' native file, and where each entry is.
    cdef object _files
    cdef str _prefix
    cdef dict _slots  # (kind, schema, key) packed in an int -> address of its value double, or 0
    cdef int _marked  # the schema this process' file was last marked at; _UNMARKED after a fork

    def __cinit__(self, schema, zero_threshold, max_buckets):
        schema, zero_threshold, max_buckets = _check_config(schema, zero_threshold, max_buckets)
        self._schema = schema
        self._zt = zero_threshold
        self._max = max_buckets
        self._marked = _UNMARKED

    def __dealloc__(self):
        PyMem_Free(self._pos.keys)
        PyMem_Free(self._pos.counts)
        PyMem_Free(self._neg.keys)
        PyMem_Free(self._neg.counts)

    cdef void _observe(self, double v) noexcept:
        if v != v:  # NaN: in no bucket
            return
        with cython.critical_section(self):
            self._observe_locked(v)

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
        if self._files is not None:  # the one branch multiprocess mode costs when off
            self._write(kind, schema, key)
        # After every observation, zero bucket included, and once: a histogram still too
        # wide after halving halves again on the next one (client_golang's limitBuckets).
        if self._max and self._pos.n + self._neg.n > self._max and self._schema > MIN_SCHEMA:
            self._schema -= 1
            _halve(&self._pos)
            _halve(&self._neg)
            if self._files is not None:
                self._mark_noexcept()

    # --- multiprocess mode (``_native_files``; the rules are the twin's) ------------

    def attach(self, files, str prefix):
        """Write every observation through to ``files`` (a ``NativeFiles``), under keys starting ``prefix``."""
        with cython.critical_section(self):
            self._files = files
            self._prefix = prefix
            self._slots = {}
            files.track(self)
            self._mark()

    cdef size_t _entry(self, int kind, int a, int32_t b) except? 0:
        # The address of an entry's value double in this process' file; 0 if files fail.
        cdef object packed = ((<int64_t> kind) << 40) | ((<int64_t> (a + 8)) << 32) | (<uint32_t> b)
        cdef unsigned char[::1] view
        found = self._slots.get(packed)
        if found is not None:
            return <size_t> found
        if kind == _ZERO:
            text = f'{self._prefix}"z", {_json_float(self._zt)}, 0]'
        else:
            text = f'{self._prefix}"{_KINDS[kind]}", {a}, {b}]'
        slot = self._files.slot(text)
        if slot is None:
            addr = 0
        else:
            view = slot[0]  # a mapping the files never close
            addr = <size_t> &view[0] + <size_t> slot[1]
        self._slots[packed] = addr
        return addr

    cdef void _mark(self) except *:
        cdef size_t addr
        self._marked = self._schema
        addr = self._entry(_MARK, self._schema, 0)
        if addr:
            (<double *> addr)[0] = 1.0
        self._entry(_ZERO, 0, 0)

    cdef void _mark_noexcept(self) noexcept:
        try:
            self._mark()
        except BaseException:  # instrumentation never breaks the app
            pass

    cdef void _write(self, int kind, int schema, int32_t key) noexcept:
        cdef size_t addr
        try:
            if self._marked != schema:
                self._mark()
            addr = self._entry(kind, 0 if kind == _ZERO else schema, key)
            if addr:
                (<double *> addr)[0] += 1.0  # this child's entry: only this cell writes it
        except BaseException:  # the observation stays in process
            pass

    def _forked(self):
        # A forked child: the parent's counts stay the parent's; ours start at 0, in files of our own.
        self._zero = 0
        self._pos.n = 0
        self._neg.n = 0
        self._slots = {}
        self._marked = _UNMARKED

    def observe(self, double amount):
        self._observe(amount)

    @property
    def schema(self):
        return self._schema

    @property
    def zero_threshold(self):
        return self._zt

    @property
    def max_buckets(self):
        return self._max

    @property
    def zero_count(self):
        return self._zero

    @property
    def count(self):
        """Observations counted (NaN is not)."""
        cdef uint64_t acc
        cdef Py_ssize_t i
        with cython.critical_section(self):
            acc = self._zero
            for i in range(self._pos.n):
                acc += self._pos.counts[i]
            for i in range(self._neg.n):
                acc += self._neg.counts[i]
        return acc

    def positive(self):
        """Populated positive buckets: ``(key, count)`` by increasing key."""
        with cython.critical_section(self):
            return _items(&self._pos)

    def negative(self):
        """Populated negative buckets (key of ``abs(v)``): ``(key, count)`` by increasing key."""
        with cython.critical_section(self):
            return _items(&self._neg)

    def state(self):
        """``(schema, zero_threshold, zero_count, positive, negative)``, read at one instant."""
        with cython.critical_section(self):
            return self._schema, self._zt, self._zero, _items(&self._pos), _items(&self._neg)

    def reset(self):
        """Forget every observation (a forked child starts from zero); the schema stays."""
        with cython.critical_section(self):
            self._zero = 0
            self._pos.n = 0
            self._neg.n = 0


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

cdef struct _Buf:
    unsigned char *p
    Py_ssize_t n
    Py_ssize_t cap


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


cdef inline int _varint(_Buf *b, uint64_t n) except -1:
    _reserve(b, 10)
    while n > 0x7F:
        b.p[b.n] = <unsigned char> ((n & 0x7F) | 0x80)
        b.n += 1
        n >>= 7
    b.p[b.n] = <unsigned char> n
    b.n += 1
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
    # them), then the packed deltas. Two passes over the arrays: sizes first, bytes second.
    cdef Py_ssize_t i, start, j, packed = 0
    cdef int64_t prev = 0, nxt = 0, gap, offset
    cdef uint32_t length
    if n == 0:
        return 0
    i = 0
    while i < n:  # one span per run
        start = i
        offset = keys[i] - nxt if i > 0 else keys[i]
        length = 1
        while i + 1 < n and keys[i + 1] - keys[i] - 1 <= 2:
            length += <uint32_t> (keys[i + 1] - keys[i])
            i += 1
        _varint(b, (span_field << 3) | 2)
        _varint(b, 2 + _varint_len(_zigzag(offset)) + _varint_len(length))
        _varint(b, 1 << 3)
        _varint(b, _zigzag(offset))
        _varint(b, 2 << 3)
        _varint(b, length)
        nxt = keys[i] + 1
        i += 1
    # Deltas, zero counts for the gaps inside spans included.
    prev = 0
    for i in range(n):
        if i > 0:
            gap = keys[i] - keys[i - 1] - 1
            if gap <= 2:
                for j in range(gap):
                    packed += _varint_len(_zigzag(-prev))
                    prev = 0
        packed += _varint_len(_zigzag(<int64_t> counts[i] - prev))
        prev = <int64_t> counts[i]
    _varint(b, (delta_field << 3) | 2)
    _varint(b, packed)
    prev = 0
    for i in range(n):
        if i > 0:
            gap = keys[i] - keys[i - 1] - 1
            if gap <= 2:
                for j in range(gap):
                    _varint(b, _zigzag(-prev))
                    prev = 0
        _varint(b, _zigzag(<int64_t> counts[i] - prev))
        prev = <int64_t> counts[i]
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
    # The native fields, and the observations they hold (zero bucket included), read in
    # one critical section: the message's sample_count (see encode_histogram).
    cdef Py_ssize_t i
    cdef uint64_t acc
    with cython.critical_section(nh):
        acc = nh._zero
        for i in range(nh._pos.n):
            acc += nh._pos.counts[i]
        for i in range(nh._neg.n):
            acc += nh._neg.counts[i]
        count[0] = acc
        _varint(b, 5 << 3)
        _varint(b, _zigzag(nh._schema))
        _double(b, 6, nh._zt)
        _varint(b, 7 << 3)
        _varint(b, nh._zero)
        if nh._pos.n == 0 and nh._neg.n == 0 and nh._zero == 0 and nh._zt == 0:
            # An empty native histogram with a zero threshold of 0: a no-op span says
            # "native" (see the twin).
            _raw(b, <const unsigned char *> b"\x62\x04\x08\x00\x10\x00", 6)
        _side(b, 9, 10, nh._neg.keys, nh._neg.counts, nh._neg.n)
        _side(b, 12, 13, nh._pos.keys, nh._pos.counts, nh._pos.n)
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


# --- C entry point for the cells ------------------------------------------------

include "dp_api.pxi"


cdef void _api_observe(object cell, double amount) noexcept:
    (<NativeHistogram> cell)._observe(amount)


cdef dp_native_api _api
_api.observe = _api_observe
C_API = PyCapsule_New(<void *> &_api, "django_prometheus._core._native_c.C_API", NULL)
