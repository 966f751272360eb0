# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled exposition writer: one metric family, straight from its cells, into one C buffer.

The pure-Python twin is ``_expo_py.py`` (read it for the rules); keep both in
step. The bytes are prometheus_client's ``generate_latest`` of the same family,
in the text format 0.0.4 or OpenMetrics 1.0. Floats go through CPython's own
``repr`` algorithm (``PyOS_double_to_string``), integers below 1e15 through a
shortcut that gives the same digits.
"""

import os

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy, strlen

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    char *PyOS_double_to_string(double val, char format_code, int precision, int flags, int *ptype)
    int Py_DTSF_ADD_DOT_0

cdef extern from *:
    """
    #include <math.h>
    #include <stdio.h>
    #include <string.h>

    /* prometheus_client's floatToGoString into out (at least 64 bytes); -1 on failure. */
    static Py_ssize_t dp_gofloat(double d, char *out, int exp2) {
        char s[64];
        Py_ssize_t n, dot = -1, i, k;
        if (isinf(d)) { memcpy(out, d > 0 ? "+Inf" : "-Inf", 4); return 4; }
        if (isnan(d)) { memcpy(out, "NaN", 3); return 3; }
        if (d == floor(d) && fabs(d) < 1e15) {
            /* repr() of an integral double below 2**53 is its digits and ".0" */
            long long v = (long long) d;
            char digits[24];
            Py_ssize_t nd = 0;
            n = 0;
            if (v < 0 || (v == 0 && signbit(d))) { s[n++] = '-'; v = -v; }
            do { digits[nd++] = (char) ('0' + v % 10); v /= 10; } while (v);
            while (nd) s[n++] = digits[--nd];
            s[n++] = '.';
            s[n++] = '0';
        } else {
            char *r = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
            if (r == NULL) return -1;
            n = (Py_ssize_t) strlen(r);
            if (n > 40) { PyMem_Free(r); PyErr_SetString(PyExc_ValueError, "float repr too long"); return -1; }
            memcpy(s, r, n);
            PyMem_Free(r);
        }
        for (i = 0; i < n; i++) { if (s[i] == '.') { dot = i; break; } }
        if (d > 0 && dot > 6) {  /* Go switches to exponents sooner than Python */
            k = 0;
            out[k++] = s[0];
            out[k++] = '.';
            for (i = 1; i < dot; i++) out[k++] = s[i];
            for (i = dot + 1; i < n; i++) out[k++] = s[i];
            while (k > 0 && (out[k - 1] == '0' || out[k - 1] == '.')) k--;
            k += sprintf(out + k, exp2 ? "e+%02d" : "e+0%d", (int) (dot - 1));
            return k;
        }
        memcpy(out, s, n);
        return n;
    }
    """
    Py_ssize_t dp_gofloat(double d, char *out, int exp2) except -1


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
    cdef Py_ssize_t n, i, start = 0
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    cdef char c
    _reserve(b, n)
    for i in range(n):
        c = p[i]
        if c == b'\\' or c == b'"' or c == b'\n':
            _put(b, p + start, i - start)
            _putc(b, b'\\')
            _putc(b, b'n' if c == b'\n' else c)
            start = i + 1
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


def render_family(int kind, str name, str doc, str unit, labelnames, children, les,
                  int mask, bint openmetrics, bint filtered, bint exp2=True):
    """The exposition of one family (see ``_expo_py.render_family`` for the arguments)."""
    cdef Buf out, created, lab
    cdef Py_ssize_t nlabels = len(labelnames), i, j, le_pos = 0, pre_len, nsamples = 0
    cdef Py_ssize_t nles = len(les)
    cdef list order = sorted(range(nlabels), key=lambda k: labelnames[k])
    cdef list heads = []  # b'name="' per sorted label, with the separating comma where needed
    cdef list bucket_heads
    cdef bytes sample, head
    cdef str value
    cdef double acc
    cdef tuple values
    cdef list buckets
    cdef object exemplars
    cdef bytes name_b = name.encode("utf-8")
    cdef bytes total_b = (name + "_total").encode("utf-8")
    cdef bytes bucket_b = (name + "_bucket{").encode("utf-8")
    cdef bytes count_b = (name + "_count").encode("utf-8")
    cdef bytes sum_b = (name + "_sum").encode("utf-8")
    cdef bytes created_b = (name + "_created").encode("utf-8")
    cdef list le_b = [f'le="{le}"'.encode("utf-8") for le in les]
    for j in range(nlabels):
        heads.append(f'{labelnames[order[j]]}="'.encode("utf-8"))
        if labelnames[order[j]] < "le":
            le_pos += 1
    out.data = NULL; out.len = 0; out.cap = 0
    created.data = NULL; created.len = 0; created.cap = 0
    lab.data = NULL; lab.len = 0; lab.cap = 0
    try:
        _reserve(&out, 4096)
        _reserve(&lab, 256)
        for values, cell in children:
            # The child's labels, sorted, escaped: `a="x",b="y"`; pre_len marks where `le` goes.
            lab.len = 0
            pre_len = 0
            for j in range(nlabels):
                if j:
                    _putc(&lab, b',')
                if j == le_pos:
                    pre_len = lab.len
                head = heads[j]
                _put(&lab, head, len(head))
                value = values[<Py_ssize_t> order[j]]
                _put_escaped(&lab, value if type(value) is str else str(value))
                _putc(&lab, b'"')
            if le_pos == nlabels:
                pre_len = lab.len
            if kind == _HISTOGRAM:
                buckets = cell.buckets()
                # Exemplars exist only in OpenMetrics (the text format has no syntax for them).
                exemplars = cell.exemplars() if openmetrics else None
                if mask & _BUCKET:
                    for i in range(nles):
                        _put(&out, bucket_b, len(bucket_b))
                        if le_pos == nlabels:
                            if nlabels:
                                _put(&out, lab.data, lab.len)
                                _putc(&out, b',')
                        else:  # the labels sorted before `le`, with their trailing comma
                            _put(&out, lab.data, pre_len)
                        head = le_b[i]
                        _put(&out, head, len(head))
                        if le_pos < nlabels:
                            _putc(&out, b',')
                            _put(&out, lab.data + pre_len, lab.len - pre_len)
                        _put(&out, b'} ', 2)
                        _putf(&out, buckets[i], exp2)
                        if exemplars is not None and exemplars[i] is not None:
                            _put_exemplar(&out, exemplars[i], exp2)
                        _putc(&out, b'\n')
                    nsamples += nles
                if mask & _COUNT:
                    _put_sample(&out, count_b, &lab, buckets[len(buckets) - 1] if buckets else 0.0, exp2)
                    nsamples += 1
                if mask & _SUM:
                    _put_sample(&out, sum_b, &lab, cell.sum, exp2)
                    nsamples += 1
            elif mask & _VALUE:
                _put_sample(&out, total_b if kind == _COUNTER else name_b, &lab, cell.get(), exp2)
                nsamples += 1
            if mask & _CREATED and kind != _GAUGE:
                _put_created(&out if openmetrics else &created, created_b, &lab, cell.created, exp2)
                nsamples += 1
        if filtered and not nsamples:
            return b""
        typ = ("counter", "gauge", "histogram")[kind]
        if openmetrics:
            return _finish_om(name, doc, unit if not filtered else "", typ, &out)
        return _finish_text(name, doc, typ, kind, &out, &created)
    finally:
        PyMem_Free(out.data)
        PyMem_Free(created.data)
        PyMem_Free(lab.data)


cdef int _put_series(Buf *b, bytes sample, Buf *lab) except -1:
    """``name{labels} `` (no braces without labels): the head of every sample but a bucket."""
    _put(b, sample, len(sample))
    if lab.len:
        _putc(b, b'{')
        _put(b, lab.data, lab.len)
        _putc(b, b'}')
    return _putc(b, b' ')


cdef int _put_sample(Buf *b, bytes sample, Buf *lab, double v, int exp2) except -1:
    _put_series(b, sample, lab)
    _putf(b, v, exp2)
    return _putc(b, b'\n')


cdef int _put_exemplar(Buf *b, tuple exemplar, int exp2) except -1:
    """`` # {a="x",b="y"} value timestamp``: sorted labels, timestamp in repr(), as prometheus_client."""
    cdef dict labels = exemplar[0]
    cdef bint first = True
    cdef char *r
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
    r = PyOS_double_to_string(exemplar[2], b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    if r == NULL:
        raise MemoryError()
    try:
        _put(b, r, strlen(r))
    finally:
        PyMem_Free(r)
    return 0


# A child's creation time never changes, and its shortest repr is the slowest number to
# write (CPython's dtoa, ~0.3 us): keep the formatted text between scrapes. Bounded: at
# worst one entry per child ever created, cleared past a million.
cdef dict _CREATED_TEXT = {}
cdef bint _CREATED_TEXT_EXP2 = True


cdef int _put_created(Buf *b, bytes sample, Buf *lab, double v, int exp2) except -1:
    global _CREATED_TEXT_EXP2
    cdef char tmp[64]
    cdef Py_ssize_t n
    cdef bytes text
    if exp2 != _CREATED_TEXT_EXP2:
        _CREATED_TEXT.clear()
        _CREATED_TEXT_EXP2 = exp2
    key = v
    cached = _CREATED_TEXT.get(key)
    if cached is None:
        n = dp_gofloat(v, tmp, exp2)
        if len(_CREATED_TEXT) >= 1_000_000:
            _CREATED_TEXT.clear()
        cached = _CREATED_TEXT[key] = PyBytes_FromStringAndSize(tmp, n)
    text = <bytes> cached
    _put_series(b, sample, lab)
    _put(b, text, len(text))
    return _putc(b, b'\n')


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


cdef bytes _finish_om(str name, str doc, str unit, str typ, Buf *body):
    cdef Buf h
    h.data = NULL; h.len = 0; h.cap = 0
    try:
        _reserve(&h, body.len + 512)
        _put_head(&h, name, b"", doc, True, typ)
        if unit:
            _put(&h, b"# UNIT ", 7)
            _puts(&h, name)
            _putc(&h, b' ')
            _puts(&h, unit)
            _putc(&h, b'\n')
        _put(&h, body.data, body.len)
        return PyBytes_FromStringAndSize(h.data, h.len)
    finally:
        PyMem_Free(h.data)


cdef bytes _finish_text(str name, str doc, str typ, int kind, Buf *body, Buf *created):
    cdef Buf h
    h.data = NULL; h.len = 0; h.cap = 0
    try:
        _reserve(&h, body.len + created.len + 512)
        _put_head(&h, name, b"_total" if kind == _COUNTER else b"", doc, False, typ)
        _put(&h, body.data, body.len)
        if created.len:
            _put_head(&h, name, b"_created", doc, False, "gauge")
            _put(&h, created.data, created.len)
        return PyBytes_FromStringAndSize(h.data, h.len)
    finally:
        PyMem_Free(h.data)


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
