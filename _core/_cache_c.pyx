# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled per-operation cache recording: each call counted by result and timed, once.

The pure-Python twin is ``_cache_py.py``; keep both in step. The cells are the
core's (``_cells_c``) Counter and Histogram, bound once per backend instance and
incremented through the C entry points ``_cells_c`` exports, so a recorded get
costs two clock reads and a few C additions more than the bare backend's.

Django routes some operations through others (``BaseCache.get_many`` through
``get``, ``incr`` through ``get`` and ``set``, every async twin through
``sync_to_async`` of the sync one). Only the outermost is recorded: it puts a
``Call`` in a context variable (which follows ``sync_to_async`` into its thread,
asyncio tasks and greenlets, as a thread-local would not), and calls made while
one is there record nothing of their own but the failures they see.
"""

from contextvars import ContextVar

cimport cython
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.contextvars cimport PyContextVar_Reset, PyContextVar_Set, get_value

from ._cells_c import C_API
from ._cells_c import Counter as _Counter
from ._cells_c import Histogram as _Histogram

cdef extern from "dp_clock.h":
    double dp_clock() nogil

__all__ = [
    "CURRENT",
    "MISSING",
    "Call",
    "RequestOps",
    "begin_request",
    "clock",
    "count_get",
    "count_get_many",
    "end_request",
    "instrument_get",
    "instrument_get_many",
    "instrument_has_key",
    "instrument_op",
    "note_failure",
    "observe",
]

include "dp_api.pxi"  # dp_cells_api

cdef dp_cells_api *_api = <dp_cells_api *> PyCapsule_GetPointer(C_API, "django_prometheus._core._cells_c.C_API")
cdef dp_cell_add _add = _api.counter_inc
cdef dp_cell_add _observe = _api.histogram_observe

#: What an instrumented get passes the backend as ``default``: getting it back is a miss, so a
#: stored falsy value or ``None`` is a hit (docs/install.md, What differs, 1).
MISSING = object()
cdef object _MISSING = MISSING

#: The outermost cache operation in progress in this context, if any.
CURRENT = ContextVar("django_prometheus_cache_operation")
cdef object _CURRENT = CURRENT


cdef class Call:
    """One outermost operation in progress; the calls it makes note their failures here."""

    cdef public bint failed


cdef inline Call _current():
    return <Call>get_value(_CURRENT)


def clock():
    """The monotonic clock durations are read from, in seconds."""
    return dp_clock()


# The request whose cache operations are being added up in this context (Server-Timing), or None.
cdef object _request = ContextVar("django_prometheus.cache.request", default=None)
# Set by the first begin_request(), never cleared: until then an operation pays this one check.
cdef bint _accounting = False


@cython.final
cdef class RequestOps:
    """What one request's outermost cache operations took: how many, and seconds in all."""

    cdef readonly Py_ssize_t operations
    cdef readonly double seconds
    cdef object _token


def begin_request():
    """Start adding up the cache operations of the current context (and of contexts copied from it)."""
    global _accounting
    cdef RequestOps state = RequestOps()
    state._token = _request.set(state)
    _accounting = True
    return state


def end_request(RequestOps state not None):
    """Stop adding up ``state``; its counts are final."""
    token = state._token
    state._token = None
    if token is None:
        return
    try:
        _request.reset(token)
    except (ValueError, RuntimeError):  # ended in another context than it began in
        if _request.get() is state:
            _request.set(None)


cdef void _account(double dt) noexcept:
    # ``_request`` has a default (None): reading it cannot fail.
    value = get_value(_request)
    if value is not None:
        state = <RequestOps>value
        if state._token is not None:
            state.operations += 1
            state.seconds += dt


cdef inline void _timed(object duration, double t0) noexcept:
    cdef double dt = dp_clock() - t0
    _observe(duration, dt)
    if _accounting:
        _account(dt)


def observe(duration, double t0):
    """Observe an outermost operation's time in ``duration`` (and in the request's sum, if one is kept)."""
    _timed(_histogram(duration), t0)


def note_failure():
    """Tell the operation in progress that it failed, though nothing was raised (a swallowed error)."""
    cdef Call current = _current()
    if current is not None:
        current.failed = True


cdef object _counter(object cell):
    if not isinstance(cell, _Counter):
        raise TypeError(f"expected a core Counter cell, got {type(cell).__name__}")
    return cell


cdef object _histogram(object cell):
    if not isinstance(cell, _Histogram):
        raise TypeError(f"expected a core Histogram cell, got {type(cell).__name__}")
    return cell


# --- upstream's four families alone (PROMETHEUS_CACHE_OPERATION_METRICS off) ---------------------


cdef class _GetCounter:
    """The cells of one counted get: upstream's get, hit, miss and fail."""

    cdef object real_get, interrupted
    cdef object gets, hits, misses, fails

    cdef object call(self, key, default, version, dict kwargs):
        return self.count(None, key, default, version, kwargs)

    @cython.final
    cdef inline object _real(self, key, version, dict kwargs):
        # The backend's get, asked for MISSING as its default (no keyword dict unless given one).
        if kwargs:
            return self.real_get(key, _MISSING, version, **kwargs)
        return self.real_get(key, _MISSING, version)

    @cython.final
    cdef inline object count(self, Call current, key, default, version, dict kwargs):
        # Upstream's four families; ``current``, the operation this get runs inside (if any),
        # learns of its failures.
        try:
            value = self._real(key, version, kwargs)
        except Exception:
            _add(self.gets, 1.0)
            _add(self.fails, 1.0)
            if current is not None:
                current.failed = True
            raise
        _add(self.gets, 1.0)
        if value is _MISSING:
            _add(self.misses, 1.0)
            return default
        if value is self.interrupted:
            _add(self.fails, 1.0)
            if current is not None:
                current.failed = True
            return default
        _add(self.hits, 1.0)
        return value


cdef object _get_counter_init(_GetCounter rec, real_get, gets, hits, misses, fails, interrupted):
    rec.real_get = real_get
    rec.interrupted = interrupted
    rec.gets, rec.hits, rec.misses, rec.fails = _counter(gets), _counter(hits), _counter(misses), _counter(fails)
    return rec


cdef object _get_wrapper(_GetCounter rec, bint takes_kwargs):
    # The backend's new ``get``: with ``takes_kwargs`` its extra keywords pass through, else the
    # get takes ``(key, default=None, version=None)`` only and builds no keyword dict per call.
    if takes_kwargs:
        def get_kw(key, default=None, version=None, **kwargs):
            return rec.call(key, default, version, kwargs)

        return get_kw

    def get(key, default=None, version=None):
        return rec.call(key, default, version, None)

    return get


def count_get(real_get, gets, hits, misses, fails, interrupted=MISSING, bint takes_kwargs=True):
    """Wrap a cache backend's ``get`` so that each call counts get + hit/miss/fail.

    ``real_get(key, MISSING, version, **kwargs)`` is called; getting ``MISSING``
    back is a miss (so stored falsy values and ``None`` are hits), getting
    ``interrupted`` back is a failure the backend chose to swallow (django-redis'
    ``IGNORE_EXCEPTIONS``), and an exception is counted and re-raised unchanged.
    Without ``takes_kwargs`` the get takes ``(key, default=None, version=None)``
    only, as Django's own backends' do, and builds no keyword dict per call.
    """
    rec = _get_counter_init(_GetCounter(), real_get, gets, hits, misses, fails, interrupted)
    return _get_wrapper(rec, takes_kwargs)


def count_get_many(requested, Py_ssize_t found, gets, hits, misses):
    """Count a native ``get_many``: each distinct requested key is one get and one hit or miss."""
    cdef Py_ssize_t n = len(set(requested))
    _add(_counter(gets), <double> n)
    _add(_counter(hits), <double> found)
    _add(_counter(misses), <double> (n - found))


# --- upstream's four families and the get operation's (PROMETHEUS_CACHE_OPERATION_METRICS on) -----


cdef class _GetRecorder(_GetCounter):
    """The cells of one instrumented get: upstream's four and the operation's hit/miss/error/duration."""

    cdef object hit, miss, error, duration

    cdef object call(self, key, default, version, dict kwargs):
        cdef double t0
        cdef Call current = _current()
        if current is not None:
            # Inside another operation: upstream's families only (they count every get, as
            # upstream does).
            return self.count(current, key, default, version, kwargs)
        t0 = dp_clock()
        try:
            value = self._real(key, version, kwargs)
        except Exception:
            _timed(self.duration, t0)
            _add(self.gets, 1.0)
            _add(self.fails, 1.0)
            _add(self.error, 1.0)
            raise
        _timed(self.duration, t0)
        _add(self.gets, 1.0)
        if value is _MISSING:
            _add(self.misses, 1.0)
            _add(self.miss, 1.0)
            return default
        if value is self.interrupted:
            _add(self.fails, 1.0)
            _add(self.error, 1.0)
            return default
        _add(self.hits, 1.0)
        _add(self.hit, 1.0)
        return value


def instrument_get(real_get, gets, hits, misses, fails, interrupted, hit, miss, error, duration,
                   bint takes_kwargs=False):
    """A backend's ``get`` recording upstream's four families and the ``get`` operation.

    As ``count_get``: ``real_get(key, MISSING, version[, **kwargs])`` is
    called, ``MISSING`` back is a miss, ``interrupted`` back a swallowed failure,
    an exception is counted and re-raised unchanged. Without ``takes_kwargs`` the
    get takes ``(key, default=None, version=None)`` only, as Django's backends'
    do, and no keyword dict is built per call.
    """
    cdef _GetRecorder rec = _get_counter_init(_GetRecorder(), real_get, gets, hits, misses, fails, interrupted)
    rec.hit, rec.miss, rec.error = _counter(hit), _counter(miss), _counter(error)
    rec.duration = _histogram(duration)
    return _get_wrapper(rec, takes_kwargs)


cdef enum:
    _OK = 0
    _HAS_KEY = 1


cdef class _OpRecorder:
    """The cells of one instrumented operation other than get and get_many."""

    cdef object real, ok, miss, error, duration  # ok: the hit cell, for has_key
    cdef int kind

    cdef object call(self, tuple args, dict kwargs):
        cdef double t0
        cdef Call current = _current()
        if current is not None:
            return self.real(*args, **kwargs)
        current = Call()
        token = PyContextVar_Set(_CURRENT, current)
        t0 = dp_clock()
        try:
            result = self.real(*args, **kwargs)
        except Exception:
            _timed(self.duration, t0)
            _add(self.error, 1.0)
            raise
        finally:
            PyContextVar_Reset(_CURRENT, token)
        _timed(self.duration, t0)
        if current.failed:
            _add(self.error, 1.0)
        elif self.kind == _HAS_KEY:
            _add(self.ok if result else self.miss, 1.0)
        else:
            _add(self.ok, 1.0)
        return result


def instrument_op(real, ok, error, duration):
    """``real(*args, **kwargs)``, counted ``ok`` or ``error`` and timed, unless inside another operation."""
    cdef _OpRecorder rec = _OpRecorder()
    rec.real, rec.ok, rec.error, rec.duration = real, _counter(ok), _counter(error), _histogram(duration)
    rec.kind = _OK

    def op(*args, **kwargs):
        return rec.call(args, kwargs)

    return op


def instrument_has_key(real, hit, miss, error, duration):
    """``real(*args, **kwargs)`` counted ``hit`` when it returns true, else ``miss`` (or ``error``)."""
    cdef _OpRecorder rec = _OpRecorder()
    rec.real, rec.ok, rec.error, rec.duration = real, _counter(hit), _counter(error), _histogram(duration)
    rec.miss = _counter(miss)
    rec.kind = _HAS_KEY

    def has_key(*args, **kwargs):
        return rec.call(args, kwargs)

    return has_key


cdef Py_ssize_t _distinct(keys):
    try:
        return len(set(keys))
    except TypeError:  # unhashable keys: the backend decides what that means
        return len(keys)


cdef class _ManyRecorder:
    """The cells of one instrumented get_many: each distinct requested key is a hit or a miss."""

    cdef object real, hit, miss, error, duration

    cdef object call(self, owner, keys, tuple args, dict kwargs):
        cdef double t0
        cdef Py_ssize_t n, found
        cdef Call current = _current()
        if current is not None:
            return self.real(owner, keys, *args, **kwargs)
        if type(keys) is not list and type(keys) is not tuple:
            keys = list(keys)  # a generator is read here once; the backend gets the same keys
        current = Call()
        token = PyContextVar_Set(_CURRENT, current)
        t0 = dp_clock()
        try:
            result = self.real(owner, keys, *args, **kwargs)
        except Exception:
            _timed(self.duration, t0)
            _add(self.error, <double> _distinct(keys))
            raise
        finally:
            PyContextVar_Reset(_CURRENT, token)
        _timed(self.duration, t0)
        n = _distinct(keys)
        if current.failed:
            _add(self.error, <double> n)
            return result
        try:
            found = len(result)
        except TypeError:
            return result
        if found > n:
            found = n
        _add(self.hit, <double> found)
        _add(self.miss, <double> (n - found))
        return result


def instrument_get_many(real, hit, miss, error, duration):
    """``real(self, keys, *args, **kwargs)``: each distinct key counted a ``hit`` (found) or a ``miss``."""
    cdef _ManyRecorder rec = _ManyRecorder()
    rec.real, rec.hit, rec.miss = real, _counter(hit), _counter(miss)
    rec.error, rec.duration = _counter(error), _histogram(duration)

    def get_many(self, keys, *args, **kwargs):
        return rec.call(self, keys, args, kwargs)

    return get_many
