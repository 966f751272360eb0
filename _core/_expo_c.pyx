# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled exposition writer: one metric family, straight from its cells, into one C buffer.

The pure-Python twin is ``_expo_py.py`` (read it for the rules); keep both in
step. The bytes are prometheus_client's ``generate_latest`` of the same family,
in the text format 0.0.4 or OpenMetrics 1.0. Floats are ``repr``'s digits,
found by ``dp_float.h`` (a shortest round-trip algorithm, held to ``repr`` by
tests/test_core_float.py) rather than by CPython's slower dtoa.
"""

import os
import sys

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_Clear
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject, PyObject_TypeCheck, PyTypeObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.math cimport INFINITY, floor, rint
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from . import _cells_c

include "dp_api.pxi"

# The cells' values are read with one C call each (their types checked once per child).
cdef dp_cells_api *_cells_api = <dp_cells_api *> PyCapsule_GetPointer(
    _cells_c.C_API, "django_prometheus._core._cells_c.C_API")
cdef type _Counter = _cells_c.Counter
cdef type _Gauge = _cells_c.Gauge
cdef type _Histogram = _cells_c.Histogram
cdef type _Family = _cells_c.Family

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    # The same call, NULL with the error left set (the caller decides).
    const char *_utf8_or_null "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t *size)


# Floats in the text prometheus_client writes, without CPython's dtoa (see dp_float.h).
cdef extern from "dp_float.h":
    Py_ssize_t dp_gofloat(double d, char *out, int exp2) except -1
    Py_ssize_t dp_repr(double d, char *out) except -1
    int64_t dp_float_check(int64_t n, uint64_t seed, int mode, double *bad) except -1
    uint64_t dp_float_fallbacks
    int dp_float_force_fallback

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* The index of the first backslash, double quote or newline in p[0:n], or n: a label value
       needs escaping only there. Eight bytes at a time (a zero byte of x ^ c marks c). */
    static inline Py_ssize_t dp_escape_at(const char *p, Py_ssize_t n) {
        /* backslash 0x5C, double quote 0x22, newline 0x0A */
        const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t x, a, b, c;
            memcpy(&x, p + i, 8);
            a = x ^ (ones * 0x5C);
            b = x ^ (ones * 0x22);
            c = x ^ (ones * 0x0A);
            if ((((a - ones) & ~a) | ((b - ones) & ~b) | ((c - ones) & ~c)) & highs) break;
        }
        for (; i < n; i++) {
            unsigned char ch = (unsigned char) p[i];
            if (ch == 0x5C || ch == 0x22 || ch == 0x0A) return i;
        }
        return n;
    }
    """
    Py_ssize_t dp_escape_at(const char *p, Py_ssize_t n) noexcept


__all__ = [
    "BUCKET",
    "COUNT",
    "COUNTER",
    "CREATED",
    "GAUGE",
    "HISTOGRAM",
    "SUM",
    "VALUE",
    "format_float",
    "read_used",
    "render_family",
    "render_metric",
    "render_protobuf",
    "scan",
]

COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
VALUE, BUCKET, COUNT, SUM, CREATED = 1, 2, 4, 8, 16

cdef enum:
    _COUNTER = 0
    _GAUGE = 1
    _HISTOGRAM = 2
    _VALUE = 1
    _BUCKET = 2
    _COUNT = 4
    _SUM = 8
    _CREATED = 16


cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


cdef int _reserve(Buf *b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char *p
    if b.len + extra <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 4096
    while cap < b.len + extra:
        cap *= 2
    p = <char *> PyMem_Realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


cdef inline int _put(Buf *b, const char *s, Py_ssize_t n) except -1:
    if b.len + n > b.cap:
        _reserve(b, n)
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline int _putc(Buf *b, char c) except -1:
    if b.len + 1 > b.cap:
        _reserve(b, 1)
    b.data[b.len] = c
    b.len += 1
    return 0


cdef inline int _puts(Buf *b, str s) except -1:
    cdef Py_ssize_t n
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    return _put(b, p, n)


cdef inline int _putf(Buf *b, double d, int exp2) except -1:
    if b.len + 64 > b.cap:
        _reserve(b, 64)
    b.len += dp_gofloat(d, b.data + b.len, exp2)
    return 0


cdef int _put_escaped(Buf *b, str s) except -1:
    """A label value: backslash, double quote and newline escaped."""
    cdef Py_ssize_t n
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    return _put_escaped_utf8(b, p, n)


cdef int _put_escaped_utf8(Buf *b, const char *p, Py_ssize_t n) except -1:
    cdef Py_ssize_t i = dp_escape_at(p, n), start = 0
    cdef char c
    if i == n:  # (almost every value: one copy)
        return _put(b, p, n)
    _reserve(b, 2 * n)
    while i < n:
        c = p[i]
        if c == b'\\' or c == b'"' or c == b'\n':
            _put(b, p + start, i - start)
            _putc(b, b'\\')
            _putc(b, b'n' if c == b'\n' else c)
            start = i + 1
        i += 1
    return _put(b, p + start, n - start)


cdef int _put_help(Buf *b, str doc, bint quote) except -1:
    cdef Py_ssize_t n, i, start = 0
    cdef const char *p = PyUnicode_AsUTF8AndSize(doc, &n)
    cdef char c
    for i in range(n):
        c = p[i]
        if c == b'\\' or c == b'\n' or (quote and c == b'"'):
            _put(b, p + start, i - start)
            _putc(b, b'\\')
            _putc(b, b'n' if c == b'\n' else c)
            start = i + 1
    return _put(b, p + start, n - start)


def format_float(double d, bint exp2=True):
    """prometheus_client's ``floatToGoString``; ``exp2``: two-digit exponents (its releases from 0.21 on)."""
    cdef char out[64]
    cdef Py_ssize_t n = dp_gofloat(d, out, exp2)
    return out[:n].decode("ascii")


cdef struct Heads:
    # A family's labels in sorted order: where each one's value sits in a child's tuple, and
    # its encoded ``name="``.
    Py_ssize_t n
    Py_ssize_t le_pos  # how many sort before `le`
    Py_ssize_t *order
    const char **head
    Py_ssize_t *head_len


cdef PyObject **_child_values(object keys, Py_ssize_t count, Py_ssize_t c, Py_ssize_t want) except? NULL:
    """Child ``c``'s label values: ``count`` of them in the flat list ``keys`` (a ``Family``'s
    ``snapshot_flat()``), or (``count`` < 0) the tuple ``keys[c]``; ``want`` of them."""
    cdef object values
    if count >= 0:
        if count != want:
            raise ValueError("a child's label values do not match its family's label names")
        return PySequence_Fast_ITEMS(keys) + c * count
    values = (<list> keys)[c]
    if type(values) is not tuple or PyTuple_GET_SIZE(values) != want:
        raise ValueError("a child's label values do not match its family's label names")
    return PySequence_Fast_ITEMS(values)


cdef tuple _values_tuple(PyObject **values, Py_ssize_t n):
    cdef Py_ssize_t j
    return tuple([<object> values[j] for j in range(n)])


cdef int _put_labels(Buf *lab, Heads *h, PyObject **values, Py_ssize_t *pre_len) except -1:
    """The child's labels, sorted, escaped: `a="x",b="y"`; pre_len marks where `le` goes."""
    cdef Py_ssize_t j, n, start = lab.len
    cdef const char *p
    cdef object v
    pre_len[0] = 0
    for j in range(h.n):
        v = <object> values[h.order[j]]
        if type(v) is not str:
            v = str(v)
        p = PyUnicode_AsUTF8AndSize(v, &n)
        if lab.len + h.head_len[j] + n + 2 > lab.cap:
            _reserve(lab, h.head_len[j] + n + 2)
        if j:
            lab.data[lab.len] = b','
            lab.len += 1
        if j == h.le_pos:
            pre_len[0] = lab.len - start
        memcpy(lab.data + lab.len, h.head[j], h.head_len[j])
        lab.len += h.head_len[j]
        _put_escaped_utf8(lab, p, n)
        _putc(lab, b'"')
    if h.le_pos == h.n:
        pre_len[0] = lab.len - start
    return 0


# What a scrape reads of a family's children: a snapshot (version, label count, every child's
# label values one after another, cells: no tuple per child), taken under the family's lock, and dropped when the scrape ends. The writer keeps
# nothing between scrapes: the labels are escaped as they are written, and each child's
# `_created` value is formatted then too (dp_float.h's shortest repr, cheap enough that
# keeping its text, 23 bytes a child, is not worth it).

cdef tuple _snapshot(object children):
    """(version or -1, label count, flat label values, cells) of a core Family; of (values,
    cell) pairs: (-1, -1, label-value tuples, cells) (see ``_child_values``)."""
    cdef list pairs, keys, cells
    if type(children) is _Family:
        return children.snapshot_flat()
    pairs = list(children)
    keys = [None] * len(pairs)
    cells = [None] * len(pairs)
    for i in range(len(pairs)):
        keys[i], cells[i] = pairs[i]
    return -1, -1, keys, cells


cdef inline double _created(object cell):
    """A cell's ``created``: one C read for the core's Counter and Histogram (and subtypes)."""
    if _is(cell, _Counter) or _is(cell, _Histogram):
        return _cells_api.created_get(cell)
    return cell.created


cdef inline bint _is(object cell, type t):
    return PyObject_TypeCheck(cell, <PyTypeObject *> t)


def render_family(int kind, str name, str doc, str unit, labelnames, children, les,
                  int mask, bint openmetrics, bint filtered, bint exp2=True):
    """The exposition of one family (see ``_expo_py.render_family`` for the arguments)."""
    cdef Buf out, lab, crb
    cdef Py_ssize_t nlabels = len(labelnames), i, j, c, le_pos = 0, nsamples = 0, n, count
    cdef Py_ssize_t nles = len(les), lab_len, pre_len, est, nb
    cdef list order = sorted(range(nlabels), key=lambda k: labelnames[k])
    cdef list heads = []  # b'name="' per sorted label
    cdef list keys, cells
    cdef object cell
    cdef bytes head
    cdef double v, total
    cdef double cum[64]
    cdef int flags
    cdef bint fast, want_created
    cdef list buckets
    cdef object exemplars
    cdef bytes name_b = name.encode("utf-8")
    cdef bytes total_b = (name + "_total").encode("utf-8")
    cdef bytes bucket_b = (name + "_bucket{").encode("utf-8")
    cdef bytes count_b = (name + "_count").encode("utf-8")
    cdef bytes sum_b = (name + "_sum").encode("utf-8")
    cdef bytes created_b = (name + "_created").encode("utf-8")
    cdef bytes value_b = total_b if kind == _COUNTER else name_b
    cdef list le_b = [f'le="{le}"'.encode("utf-8") for le in les]
    cdef char *a
    cdef Heads h
    for j in range(nlabels):
        heads.append(f'{labelnames[order[j]]}="'.encode("utf-8"))
        if labelnames[order[j]] < "le":
            le_pos += 1
    version, count, keys, cells = _snapshot(children)
    n = len(cells)
    want_created = mask & _CREATED and kind != _GAUGE
    out.data = NULL; out.len = 0; out.cap = 0
    lab.data = NULL; lab.len = 0; lab.cap = 0
    crb.data = NULL; crb.len = 0; crb.cap = 0
    h.n = nlabels
    h.le_pos = le_pos
    h.order = <Py_ssize_t *> PyMem_Malloc((nlabels + 1) * sizeof(Py_ssize_t))
    h.head = <const char **> PyMem_Malloc((nlabels + 1) * sizeof(const char *))
    h.head_len = <Py_ssize_t *> PyMem_Malloc((nlabels + 1) * sizeof(Py_ssize_t))
    try:
        if h.order == NULL or h.head == NULL or h.head_len == NULL:
            raise MemoryError()
        for j in range(nlabels):
            h.order[j] = order[j]
            h.head[j] = <bytes> heads[j]
            h.head_len[j] = len(<bytes> heads[j])
        # One allocation for the whole answer (an estimate with labels of 48 bytes; _put checks).
        if kind == _HISTOGRAM:
            est = n * (nles * (len(bucket_b) + 16 + 34 + 48) + len(count_b) + len(sum_b) + 2 * (34 + 48))
            for i in range(nles):
                est += n * len(<bytes> le_b[i])
        else:
            est = n * (len(value_b) + 36 + 48)
        if want_created:
            est += n * (len(created_b) + 8 + 48 + 20)
        est += 1024 + 2 * len(doc) + 4 * len(name)
        _reserve(&out, est)
        _reserve(&lab, 256)
        typ = ("counter", "gauge", "histogram")[kind]
        if openmetrics:
            _put_head(&out, name, b"", doc, True, typ)
            if unit and not filtered:
                _put(&out, b"# UNIT ", 7)
                _puts(&out, name)
                _putc(&out, b' ')
                _puts(&out, unit)
                _putc(&out, b'\n')
        else:
            _put_head(&out, name, b"_total" if kind == _COUNTER else b"", doc, False, typ)
        nb = nles if nles < 64 else 64
        for c in range(n):
            cell = cells[c]
            lab.len = 0
            _put_labels(&lab, &h, _child_values(keys, count, c, nlabels), &pre_len)
            lab_len = lab.len
            a = lab.data
            if kind == _HISTOGRAM:
                fast = _is(cell, _Histogram)
                flags = 0
                if fast:
                    if _cells_api.histogram_get(cell, cum, nb, &total, &flags) != nles or nles > 64:
                        fast = False
                if not fast:
                    buckets = cell.buckets()
                    total = cell.sum
                    if len(buckets) != nles:
                        raise ValueError("a histogram cell's buckets do not match its family's bounds")
                # Exemplars exist only in OpenMetrics (the text format has no syntax for them).
                exemplars = cell.exemplars() if openmetrics and (flags & 2 or not fast) else None
                if mask & _BUCKET:
                    for i in range(nles):
                        _put(&out, bucket_b, len(bucket_b))
                        if le_pos == nlabels:
                            if nlabels:
                                _put(&out, a, lab_len)
                                _putc(&out, b',')
                        else:  # the labels sorted before `le`, with their trailing comma
                            _put(&out, a, pre_len)
                        head = le_b[i]
                        _put(&out, head, len(head))
                        if le_pos < nlabels:
                            _putc(&out, b',')
                            _put(&out, a + pre_len, lab_len - pre_len)
                        _put(&out, b'} ', 2)
                        _putf(&out, cum[i] if fast else <double> buckets[i], exp2)
                        if exemplars is not None and exemplars[i] is not None:
                            _put_exemplar(&out, exemplars[i], exp2)
                        _putc(&out, b'\n')
                    nsamples += nles
                if mask & _COUNT:
                    v = 0.0
                    if nles:
                        v = cum[nles - 1] if fast else <double> buckets[nles - 1]
                    _put_sample(&out, count_b, a, lab_len, v, exp2)
                    nsamples += 1
                if mask & _SUM:
                    _put_sample(&out, sum_b, a, lab_len, total, exp2)
                    nsamples += 1
            elif mask & _VALUE:
                if kind == _COUNTER and _is(cell, _Counter):
                    v = _cells_api.counter_get(cell)
                elif kind == _GAUGE and _is(cell, _Gauge):
                    v = _cells_api.gauge_get(cell)
                else:
                    v = cell.get()
                _put_sample(&out, value_b, a, lab_len, v, exp2)
                nsamples += 1
            if want_created:
                nsamples += 1
                # The text format writes `_created` samples as a gauge family of their own,
                # after the others: gathered in crb meanwhile.
                _put_sample(&out if openmetrics else &crb, created_b, a, lab_len, _created(cell), exp2)
        if filtered and not nsamples:
            return b""
        if crb.len:
            _put_head(&out, name, b"_created", doc, False, "gauge")
            _put(&out, crb.data, crb.len)
        return PyBytes_FromStringAndSize(out.data, out.len)
    finally:
        PyMem_Free(out.data)
        PyMem_Free(lab.data)
        PyMem_Free(crb.data)
        PyMem_Free(h.order)
        PyMem_Free(h.head)
        PyMem_Free(h.head_len)


cdef int _put_series(Buf *b, bytes sample, const char *lab, Py_ssize_t lab_len) except -1:
    """``name{labels} `` (no braces without labels): the head of every sample but a bucket."""
    _put(b, sample, len(sample))
    if lab_len:
        _putc(b, b'{')
        _put(b, lab, lab_len)
        _putc(b, b'}')
    return _putc(b, b' ')


cdef int _put_sample(Buf *b, bytes sample, const char *lab, Py_ssize_t lab_len, double v,
                     int exp2) except -1:
    _put_series(b, sample, lab, lab_len)
    _putf(b, v, exp2)
    return _putc(b, b'\n')


cdef int _put_exemplar(Buf *b, tuple exemplar, int exp2) except -1:
    """`` # {a="x",b="y"} value timestamp``: sorted labels, timestamp in repr(), as prometheus_client."""
    cdef dict labels = exemplar[0]
    cdef bint first = True
    _put(b, b" # {", 4)
    for k in sorted(labels):
        if not first:
            _putc(b, b',')
        first = False
        _puts(b, k)
        _put(b, b'="', 2)
        v = labels[k]
        _put_escaped(b, v if type(v) is str else str(v))
        _putc(b, b'"')
    _put(b, b"} ", 2)
    _putf(b, exemplar[1], exp2)
    _putc(b, b' ')
    _reserve(b, 32)
    b.len += dp_repr(exemplar[2], b.data + b.len)
    return 0


cdef int _put_head(Buf *h, str name, bytes suffix, str doc, bint quote, str typ) except -1:
    """``# HELP <name><suffix> <doc>`` and ``# TYPE <name><suffix> <typ>`` lines."""
    _put(h, b"# HELP ", 7)
    _puts(h, name)
    _put(h, suffix, len(suffix))
    _putc(h, b' ')
    _put_help(h, doc, quote)
    _put(h, b"\n# TYPE ", 8)
    _puts(h, name)
    _put(h, suffix, len(suffix))
    _putc(h, b' ')
    _puts(h, typ)
    return _putc(h, b'\n')


_METRIC_TYPES = frozenset(("counter", "gauge", "histogram", "summary"))


def render_metric(str name, str doc, str typ, str unit, samples, bint openmetrics, bint exp2=True):
    """One prometheus_client ``Metric`` as ``generate_latest`` writes it (see ``_expo_py.render_metric``)."""
    cdef Buf out, moved_created, moved_gcount, moved_gsum
    cdef Buf *dest
    cdef str sname
    cdef dict labels
    cdef Py_ssize_t nname = len(name)
    cdef bint first
    if typ not in _METRIC_TYPES:
        return None
    out.data = NULL; out.len = 0; out.cap = 0
    moved_created.data = NULL; moved_created.len = 0; moved_created.cap = 0
    moved_gcount.data = NULL; moved_gcount.len = 0; moved_gcount.cap = 0
    moved_gsum.data = NULL; moved_gsum.len = 0; moved_gsum.cap = 0
    try:
        _reserve(&out, 256 + 64 * len(samples))
        if openmetrics:
            _put_head(&out, name, b"", doc, True, typ)
            if unit:
                _put(&out, b"# UNIT ", 7)
                _puts(&out, name)
                _putc(&out, b' ')
                _puts(&out, unit)
                _putc(&out, b'\n')
        else:
            _put_head(&out, name, b"_total" if typ == "counter" else b"", doc, False, typ)
        for sample in samples:
            sname, labels, value, timestamp, exemplar = sample[0], sample[1], sample[2], sample[3], sample[4]
            if timestamp is not None or exemplar is not None or getattr(sample, "native_histogram", None):
                return None
            dest = &out
            if not openmetrics and len(sname) > nname and sname.startswith(name):
                suffix = sname[nname:]
                if suffix == "_created":
                    dest = &moved_created
                elif suffix == "_gcount":
                    dest = &moved_gcount
                elif suffix == "_gsum":
                    dest = &moved_gsum
            _puts(dest, sname)
            if labels:
                _putc(dest, b'{')
                first = True
                for k in sorted(labels):
                    if not first:
                        _putc(dest, b',')
                    first = False
                    _puts(dest, k)
                    _put(dest, b'="', 2)
                    v = labels[k]
                    _put_escaped(dest, v if type(v) is str else str(v))
                    _putc(dest, b'"')
                _putc(dest, b'}')
            _putc(dest, b' ')
            _putf(dest, value, exp2)
            _putc(dest, b'\n')
        # (sorted by suffix, as prometheus_client writes them)
        if moved_created.len:
            _put_head(&out, name, b"_created", doc, False, "gauge")
            _put(&out, moved_created.data, moved_created.len)
        if moved_gcount.len:
            _put_head(&out, name, b"_gcount", doc, False, "gauge")
            _put(&out, moved_gcount.data, moved_gcount.len)
        if moved_gsum.len:
            _put_head(&out, name, b"_gsum", doc, False, "gauge")
            _put(&out, moved_gsum.data, moved_gsum.len)
        return PyBytes_FromStringAndSize(out.data, out.len)
    finally:
        PyMem_Free(out.data)
        PyMem_Free(moved_created.data)
        PyMem_Free(moved_gcount.data)
        PyMem_Free(moved_gsum.data)


# --- The protobuf exposition of one family ---------------------------------------
#
# io.prometheus.client.MetricFamily, varint-delimited, as ``protobuf.py`` writes it (read it
# for the mapping): the same bytes, from a snapshot of the children as the text writer
# takes it; each child's LabelPair fields and created Timestamp are encoded as it is written.

cdef bint _LITTLE = sys.byteorder == "little"

# A histogram cell's native part (``_native_c``) encodes its own fields into the writer's
# scratch buffer with one C call; loaded with the first native part met.
cdef dp_native_api *_native_api = NULL
cdef type _NativeType = None


cdef int _load_native() except -1:
    global _native_api, _NativeType
    from . import _native_c
    _NativeType = _native_c.NativeHistogram
    _native_api = <dp_native_api *> PyCapsule_GetPointer(
        _native_c.C_API, "django_prometheus._core._native_c.C_API")
    return 0


cdef inline Py_ssize_t _varint_len(uint64_t n) noexcept:
    cdef Py_ssize_t k = 1
    while n > 0x7F:
        n >>= 7
        k += 1
    return k


cdef inline void _varint_at(Buf *b, uint64_t n) noexcept:
    """A varint; the room for it (10 bytes) reserved by the caller."""
    while n > 0x7F:
        b.data[b.len] = <char> ((n & 0x7F) | 0x80)
        b.len += 1
        n >>= 7
    b.data[b.len] = <char> n
    b.len += 1


cdef inline void _double_at(Buf *b, unsigned char tag, double v) noexcept:
    b.data[b.len] = <char> tag
    memcpy(b.data + b.len + 1, &v, 8)  # little-endian hosts only (render_protobuf checks)
    b.len += 9


cdef int _pb_string(Buf *b, int field, str text) except -1:
    cdef bytes data = text.encode("utf-8", "surrogatepass")
    _reserve(b, 20 + len(data))
    _varint_at(b, (field << 3) | 2)
    _varint_at(b, len(data))
    return _put(b, data, len(data))


cdef int _pb_timestamp(Buf *b, double seconds) except -1:
    """A google.protobuf.Timestamp body (``protobuf._timestamp``)."""
    cdef double whole = floor(seconds)
    cdef double frac = rint((seconds - whole) * 1e9)
    cdef int64_t nanos = <int64_t> frac if frac < 999999999.0 else 999999999
    _reserve(b, 24)
    if whole != 0:
        _varint_at(b, 1 << 3)
        _varint_at(b, <uint64_t> <int64_t> whole)
    if nanos:
        _varint_at(b, 2 << 3)
        _varint_at(b, <uint64_t> nanos)
    return 0


cdef int _pb_labels(Buf *lab, list names, PyObject **values) except -1:
    """A child's LabelPair fields (``names``: each label's encoded name field), declared order."""
    cdef Py_ssize_t j, n, pair
    cdef const char *p
    cdef bytes field, raw
    cdef object v
    for j in range(len(names)):
        field = <bytes> names[j]
        v = <object> values[j]
        if type(v) is not str:
            v = str(v)
        p = _utf8_or_null(v, &n)
        if p == NULL:  # a lone surrogate: written as protobuf.py writes it
            PyErr_Clear()
            raw = (<str> v).encode("utf-8", "surrogatepass")
            p = raw
            n = len(raw)
        pair = len(field) + 1 + _varint_len(n) + n
        _reserve(lab, 11 + pair)
        _varint_at(lab, (1 << 3) | 2)
        _varint_at(lab, pair)
        memcpy(lab.data + lab.len, <char *> field, len(field))
        lab.len += len(field)
        _varint_at(lab, (2 << 3) | 2)
        _varint_at(lab, n)
        memcpy(lab.data + lab.len, p, n)
        lab.len += n
    return 0


def render_protobuf(int kind, str name, str doc, str unit, labelnames, children, bounds,
                    bint with_sum, bint use_created, slow):
    """One family as a delimited MetricFamily message (see ``_expo_py.render_protobuf``)."""
    cdef Buf out, lab, one, ts
    cdef dp_buf nat  # a child's native fields, reused from child to child
    cdef list keys, cells, names = []
    cdef Py_ssize_t c, i, n, nb = len(bounds), nfinite = 0, lab_len, cr_len, per_child
    cdef PyObject **values
    cdef Py_ssize_t body, metric, head_len, start, est
    cdef double cum[64]
    cdef double bnd[64]
    cdef double v, total
    cdef uint64_t count, cap
    cdef unsigned long long native_count
    cdef int flags, field
    cdef bint fast, has_native
    cdef object cell, native
    cdef bytes one_b
    cdef Buf head
    cdef char *a
    if not _LITTLE or nb > 64:
        return None
    for i in range(nb):
        bnd[i] = bounds[i]
        if bnd[i] != INFINITY:
            nfinite += 1
    version, per_child, keys, cells = _snapshot(children)
    n = len(cells)
    out.data = NULL; out.len = 0; out.cap = 0
    head.data = NULL; head.len = 0; head.cap = 0
    lab.data = NULL; lab.len = 0; lab.cap = 0
    one.data = NULL; one.len = 0; one.cap = 0
    ts.data = NULL; ts.len = 0; ts.cap = 0
    nat.p = NULL; nat.n = 0; nat.cap = 0
    try:
        _reserve(&lab, 256)
        for label in labelnames:  # LabelPair.name, the same for every child
            one.len = 0
            _pb_string(&one, 1, label)
            names.append(PyBytes_FromStringAndSize(one.data, one.len))
        if kind == _HISTOGRAM:
            est = n * (nfinite * 32 + 64 + 48)
        else:
            est = n * (40 + 48)
        est += n * 24 + 64 + 4 * len(name) + 4 * len(doc) + 4 * len(unit)
        # The family's head goes in front once its length is known: room for it first.
        head.len = 0
        _pb_string(&head, 1, name + "_total" if kind == _COUNTER else name)
        _pb_string(&head, 2, doc)
        _reserve(&head, 4)
        _varint_at(&head, 3 << 3)
        _varint_at(&head, (0, 1, 4)[kind])
        start = 10 + head.len
        _reserve(&out, start + est)
        out.len = start
        for c in range(n):
            cell = cells[c]
            lab.len = 0
            values = _child_values(keys, per_child, c, len(names))
            _pb_labels(&lab, names, values)
            lab_len = lab.len
            a = lab.data
            cr_len = 0
            if use_created and kind != _GAUGE:
                ts.len = 0
                _pb_timestamp(&ts, _created(cell))
                cr_len = ts.len
            if kind == _HISTOGRAM:
                fast = _is(cell, _Histogram)
                flags = 0
                has_native = False
                if fast:
                    fast = _cells_api.histogram_get(cell, cum, nb, &total, &flags) == nb and (flags & ~1) == 0
                if fast and flags & 1:
                    # The native part, read after the classic buckets as ``slow`` reads it: its
                    # count is the message's, and no classic bucket may exceed it.
                    native = cell.native
                    if _native_api == NULL:
                        _load_native()
                    if type(native) is _NativeType:
                        nat.n = 0
                        _native_api.encode(native, &nat, &native_count)
                        has_native = True
                    else:
                        fast = False
                if not fast:
                    one_b = slow(_values_tuple(values, len(names)), cell)
                    _reserve(&out, 10 + len(one_b))
                    _varint_at(&out, (4 << 3) | 2)
                    _varint_at(&out, len(one_b))
                    _put(&out, one_b, len(one_b))
                    continue
                if has_native:
                    count = native_count
                    for i in range(nb):  # read a moment before the native part (see above)
                        if cum[i] > <double> count:
                            cum[i] = <double> count
                    body = nat.n
                else:
                    count = <uint64_t> <int64_t> (cum[nb - 1] if nb else 0.0)
                    body = 0
                body += 1 + _varint_len(count) + (9 if with_sum else 0)
                for i in range(nb):
                    if bnd[i] != INFINITY:
                        body += 2 + 1 + _varint_len(<uint64_t> <int64_t> cum[i]) + 9
                if use_created:
                    body += 1 + _varint_len(cr_len) + cr_len
                metric = lab_len + 1 + _varint_len(body) + body
                _reserve(&out, 20 + metric)
                _varint_at(&out, (4 << 3) | 2)
                _varint_at(&out, metric)
                memcpy(out.data + out.len, a, lab_len)
                out.len += lab_len
                _varint_at(&out, (7 << 3) | 2)
                _varint_at(&out, body)
                _varint_at(&out, 1 << 3)
                _varint_at(&out, count)
                if with_sum:
                    _double_at(&out, (2 << 3) | 1, total)
                for i in range(nb):
                    if bnd[i] != INFINITY:
                        count = <uint64_t> <int64_t> cum[i]
                        _varint_at(&out, (3 << 3) | 2)
                        _varint_at(&out, 1 + _varint_len(count) + 9)
                        _varint_at(&out, 1 << 3)
                        _varint_at(&out, count)
                        _double_at(&out, (2 << 3) | 1, bnd[i])
                if has_native:
                    memcpy(out.data + out.len, nat.p, nat.n)
                    out.len += nat.n
                if use_created:
                    _varint_at(&out, (15 << 3) | 2)
                    _varint_at(&out, cr_len)
                    memcpy(out.data + out.len, ts.data, cr_len)
                    out.len += cr_len
                continue
            if kind == _COUNTER:
                v = _cells_api.counter_get(cell) if _is(cell, _Counter) else cell.get()
                body = 9 + ((1 + _varint_len(cr_len) + cr_len) if use_created else 0)
                field = 3
            else:
                v = _cells_api.gauge_get(cell) if _is(cell, _Gauge) else cell.get()
                body = 9
                field = 2
            metric = lab_len + 1 + _varint_len(body) + body
            _reserve(&out, 20 + metric)
            _varint_at(&out, (4 << 3) | 2)
            _varint_at(&out, metric)
            memcpy(out.data + out.len, a, lab_len)
            out.len += lab_len
            _varint_at(&out, (field << 3) | 2)
            _varint_at(&out, body)
            _double_at(&out, (1 << 3) | 1, v)
            if kind == _COUNTER and use_created:
                _varint_at(&out, (3 << 3) | 2)
                _varint_at(&out, cr_len)
                memcpy(out.data + out.len, ts.data, cr_len)
                out.len += cr_len
        if unit:
            _pb_string(&out, 5, unit)
        # The delimiter (the family message's length) and the head, right before the metrics.
        body = head.len + out.len - start
        head_len = _varint_len(body) + head.len
        i = start - head_len
        c = out.len
        out.len = i
        _varint_at(&out, body)
        memcpy(out.data + out.len, head.data, head.len)
        out.len = c
        return PyBytes_FromStringAndSize(out.data + i, out.len - i)
    finally:
        PyMem_Free(out.data)
        PyMem_Free(head.data)
        PyMem_Free(lab.data)
        PyMem_Free(one.data)
        PyMem_Free(ts.data)
        PyMem_Free(nat.p)


# --- Reading multiprocess files ---------------------------------------------------
#
# prometheus_client's format (``mmap_dict.py``): a 4-byte "bytes used" header,
# 4 bytes of padding, then entries of (4-byte key length, UTF-8 key padded to
# 8-byte alignment, value double, timestamp double). Read with plain read(2)
# calls, only up to "used", into one reusable buffer.

cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char *path, int flags)
    int O_RDONLY
cdef extern from "<unistd.h>" nogil:
    ssize_t c_read "read"(int fd, void *buf, size_t n)
    int c_close "close"(int fd)
cdef extern from "<errno.h>":
    int errno
    int ENOENT
    int EINTR


cdef Py_ssize_t _read_used(bytes path, Buf *b) except -2:
    """Read one file's used bytes into b; -1 if the file is gone."""
    cdef int fd
    cdef ssize_t got
    cdef Py_ssize_t want, used
    cdef const char *p = path
    with nogil:
        fd = c_open(p, O_RDONLY)
    if fd < 0:
        if errno == ENOENT:
            return -1
        raise OSError(errno, "cannot open multiprocess file", path.decode("utf-8", "replace"))
    try:
        b.len = 0
        want = 4096
        while True:
            _reserve(b, want - b.len)
            with nogil:
                got = c_read(fd, b.data + b.len, want - b.len)
            if got < 0:
                if errno == EINTR:
                    continue
                raise OSError(errno, "cannot read multiprocess file", path.decode("utf-8", "replace"))
            if got == 0:
                break
            b.len += got
            if b.len >= 8:
                used = (<int *> b.data)[0]
                if used > want:
                    want = used
                elif b.len >= used:
                    break
        if b.len < 8:
            return 0
        used = (<int *> b.data)[0]
        return used if used <= b.len else b.len
    finally:
        c_close(fd)


def read_used(str path):
    """The used part of one file, or None if it is gone."""
    cdef Buf b
    cdef Py_ssize_t used
    b.data = NULL; b.len = 0; b.cap = 0
    try:
        used = _read_used(path.encode("utf-8"), &b)
        if used < 0:
            return None
        return PyBytes_FromStringAndSize(b.data, max(used, 8) if b.len >= 8 else b.len)
    finally:
        PyMem_Free(b.data)


def scan(paths, gauge, resolve):
    """Sum every file's values per target (see ``_expo_py.scan``)."""
    cdef Buf b
    cdef Py_ssize_t index, used, pos, n, target, nsums = 0, cap = 0, i
    cdef double *sums = NULL
    cdef double *grown
    cdef double value, timestamp
    cdef dict cache
    cdef dict sum_keys = {}
    cdef dict gauge_keys = {}
    cdef list gauges = []
    cdef bint is_gauge
    b.data = NULL; b.len = 0; b.cap = 0
    try:
        for index in range(len(paths)):
            used = _read_used(os.fsencode(paths[index]), &b)
            if used < 0:
                continue
            is_gauge = bool(gauge[index])
            cache = gauge_keys if is_gauge else sum_keys
            pos = 8
            while pos < used:
                n = (<int *> (b.data + pos))[0]
                if n < 0 or n + pos > used:
                    raise RuntimeError("Read beyond file size detected, file is corrupted.")
                key = PyBytes_FromStringAndSize(b.data + pos + 4, n)
                pos += 4 + n + (8 - (n + 4) % 8)
                if pos + 16 > b.len:
                    raise RuntimeError("Read beyond file size detected, file is corrupted.")
                memcpy(&value, b.data + pos, 8)
                memcpy(&timestamp, b.data + pos + 8, 8)
                pos += 16
                t = cache.get(key)
                if t is None:
                    t = cache[key] = resolve(key.decode("utf-8"), index)
                target = t
                if is_gauge:
                    gauges.append((target, index, value, timestamp))
                    continue
                if target >= cap:
                    cap = max(2 * cap, target + 64)
                    grown = <double *> PyMem_Realloc(sums, cap * sizeof(double))
                    if grown == NULL:
                        raise MemoryError()
                    sums = grown
                    for i in range(nsums, cap):
                        sums[i] = 0.0
                    nsums = cap
                sums[target] += value
        out = [0.0] * (max(t for t in sum_keys.values()) + 1 if sum_keys else 0)
        for i in range(len(out)):
            out[i] = sums[i]
        return out, gauges
    finally:
        PyMem_Free(b.data)
        PyMem_Free(sums)


def _check_floats(Py_ssize_t n, uint64_t seed, int mode, bint fallback=False):
    """Tests only: ``dp_float_check`` (dp_float.h) over ``n`` doubles of ``mode``.

    Returns (how many differ from ``repr``/floatToGoString, the first that does or None, how
    many took the ``repr`` fallback); ``fallback``: every double through it.
    """
    global dp_float_force_fallback
    cdef double bad = 0.0
    cdef int64_t wrong
    cdef uint64_t before = dp_float_fallbacks
    dp_float_force_fallback = fallback
    try:
        wrong = dp_float_check(n, seed, mode, &bad)
    finally:
        dp_float_force_fallback = 0
    return wrong, (bad if wrong else None), dp_float_fallbacks - before
