# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled DB fast path: the ``execute``/``executemany`` of our cursor classes, the execute wrapper,
and the per-request accounting they feed.

The pure-Python twin is ``_db_py.py``; keep both in step. The cells are the
core's (``_cells``) Counter and Histogram; they are bound once per cursor
class, i.e. per (cursor class, alias, vendor), never looked up per query.
Durations come from one monotonic clock read before and one after the call.
"""

cimport cython
from cpython.contextvars cimport get_value

from contextvars import ContextVar

cdef extern from "dp_clock.h":
    double dp_clock() nogil

__all__ = [
    "MAX_STATEMENTS",
    "REPEAT_THRESHOLD",
    "RequestQueries",
    "account_statement",
    "begin_request",
    "end_request",
    "instrument_execute",
    "instrument_executemany",
    "instrument_wrapper",
]

#: A statement (same SQL text) run this many times in one request marks it ``repeated``.
REPEAT_THRESHOLD = 5
#: Distinct statements remembered per request; later new ones are counted, not tracked.
MAX_STATEMENTS = 1000
cdef Py_ssize_t _REPEAT = REPEAT_THRESHOLD
cdef Py_ssize_t _MAX = MAX_STATEMENTS

# "No params argument was passed": Django calls ``execute(sql)`` when params is None.
cdef object _NOARG = object()

# The request being accounted in this context (ASGI task, sync_to_async thread), or None.
cdef object _current = ContextVar("django_prometheus.db.request", default=None)
# Set by the first begin_request(), never cleared: until then a query pays this one check.
cdef bint _accounting = False


@cython.final
cdef class RequestQueries:
    """What one request ran: queries (``executemany`` is one), seconds in the database, and
    whether one statement (same SQL text, parameters ignored) ran ``REPEAT_THRESHOLD`` times."""

    cdef readonly Py_ssize_t queries
    cdef readonly double seconds
    cdef readonly bint repeated
    cdef dict _seen
    cdef object _token

    def __cinit__(self):
        self._seen = {}

    cdef void _add(self, object sql, double dt) noexcept:
        cdef object n
        with cython.critical_section(self):
            self.queries += 1
            self.seconds += dt
            seen = self._seen
            if seen is None:  # already repeated: nothing left to find
                return
            try:
                n = seen.get(sql)
                if n is None:
                    if len(seen) < _MAX:
                        seen[sql] = 1
                elif <Py_ssize_t>n + 1 >= _REPEAT:
                    self.repeated = True
                    self._seen = None
                else:
                    seen[sql] = n + 1
            except TypeError:  # an unhashable composed statement: counted, not tracked
                pass


def begin_request():
    """Start accounting the queries of the current context (and of contexts copied from it)."""
    global _accounting
    cdef RequestQueries state = RequestQueries()
    state._token = _current.set(state)
    _accounting = True
    return state


def end_request(RequestQueries state not None):
    """Stop accounting ``state``; its counts are final (queries still running elsewhere are not added)."""
    token = state._token
    state._token = None
    state._seen = None
    if token is None:
        return
    try:
        _current.reset(token)
    except (ValueError, RuntimeError):  # ended in another context than it began in
        if _current.get() is state:
            _current.set(None)


cdef inline void _account(object sql, double dt) noexcept:
    state = get_value(_current)
    if state is not None and (<RequestQueries>state)._token is not None:
        (<RequestQueries>state)._add(sql, dt)


def account_statement(sql, double seconds):
    """Add a statement the cursors do not see (``BEGIN``/``COMMIT``/``ROLLBACK`` sent by the
    driver's own calls) to the request being accounted in this context, if any."""
    if _accounting:
        _account(sql, seconds)


@cython.final
cdef class _CountingIterator:
    """Iterates a one-shot iterable once, counting what the driver takes from it."""

    cdef object _it
    cdef Py_ssize_t n

    def __cinit__(self, iterable):
        self._it = iter(iterable)
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._it)
        self.n += 1
        return item


@cython.final
cdef class _Recorder:
    """The cells one instrumented call records into, bound once (per cursor class, or per wrapper)."""

    cdef object executes_inc, many_inc, observe, on_error

    def __cinit__(self, executes, many, duration, on_error):
        self.executes_inc = executes.inc
        self.many_inc = many.inc if many is not None else None
        self.observe = duration.observe
        self.on_error = on_error

    cdef inline int done(self, object sql, double t0) except -1:
        cdef double dt = dp_clock() - t0
        self.observe(dt)
        if _accounting:
            _account(sql, dt)
        return 0

    cdef int failed(self, object sql, double t0, object exc) except -1:
        self.done(sql, t0)
        self.on_error(exc)
        return 0

    cdef object many(self, object call, tuple head, object sql, object params, tuple tail, dict kwargs):
        """``call(*head, sql, params, *tail, **kwargs)``, one execute per parameter set.

        A sized ``params`` is counted up front and passed through untouched; any
        other iterable (a generator) is handed to the driver inside a counting
        iterator, so it is consumed once, and counted afterwards (docs/install.md, What differs, 6).
        """
        cdef double t0
        cdef Py_ssize_t n
        cdef _CountingIterator counting = None
        try:
            n = len(params)
        except TypeError:
            counting = _CountingIterator(params)
            params = counting
        else:
            self.executes_inc(n)
            self.many_inc(n)
        t0 = dp_clock()
        try:
            result = call(*head, sql, params, *tail, **kwargs)
        except BaseException as exc:
            self._settle(counting)
            self.failed(sql, t0, exc)
            raise
        self._settle(counting)
        self.done(sql, t0)
        return result

    cdef int _settle(self, _CountingIterator counting) except -1:
        if counting is not None:
            self.executes_inc(counting.n)
            self.many_inc(counting.n)
        return 0


def instrument_execute(real, executes not None, duration not None, on_error not None):
    """An ``execute(self, query, params=…, **kwargs)`` that calls ``real`` and records it.

    ``executes`` is a Counter cell and ``duration`` a Histogram cell; ``on_error(exc)``
    (never raises) counts an exception, which is then re-raised unchanged.
    """
    cdef _Recorder rec = _Recorder(executes, None, duration, on_error)
    inc = rec.executes_inc

    def execute(self, query, params=_NOARG, **kwargs):
        cdef double t0
        inc()
        t0 = dp_clock()
        try:
            if kwargs:
                if params is _NOARG:
                    result = real(self, query, **kwargs)
                else:
                    result = real(self, query, params, **kwargs)
            elif params is _NOARG:
                result = real(self, query)
            else:
                result = real(self, query, params)
        except BaseException as exc:
            rec.failed(query, t0, exc)
            raise
        rec.done(query, t0)
        return result

    return execute


def instrument_executemany(real, executes not None, many not None, duration not None, on_error not None):
    """An ``executemany(self, query, param_list, **kwargs)`` counting one execute per parameter set.

    For the request being accounted it is one query.
    """
    cdef _Recorder rec = _Recorder(executes, many, duration, on_error)

    def executemany(self, query, param_list, *args, **kwargs):
        return rec.many(real, (self,), query, param_list, args, kwargs)

    return executemany


def instrument_wrapper(executes not None, many not None, duration not None, on_error not None):
    """A Django execute wrapper, ``wrapper(execute, sql, params, many, context)``, that records each call.

    The protocol of ``connection.execute_wrappers``: ``execute`` is the next
    wrapper or Django's executor, and is called exactly as Django would have
    called it. ``many`` calls count one per parameter set, as ``executemany``.
    """
    cdef _Recorder rec = _Recorder(executes, many, duration, on_error)
    inc = rec.executes_inc
    cdef dict no_kwargs = {}

    def wrapper(execute, sql, params, is_many, context):
        cdef double t0
        if is_many:
            return rec.many(execute, (), sql, params, (is_many, context), no_kwargs)
        inc()
        t0 = dp_clock()
        try:
            result = execute(sql, params, is_many, context)
        except BaseException as exc:
            rec.failed(sql, t0, exc)
            raise
        rec.done(sql, t0)
        return result

    return wrapper
