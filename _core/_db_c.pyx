# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""Compiled DB fast path: the ``execute``/``executemany`` of our cursor classes, and the execute wrapper.

The pure-Python twin is ``_db_py.py``; keep both in step. The cells are the
core's (``_cells``) Counter and Histogram; they are bound once per cursor
class, i.e. per (cursor class, alias, vendor), never looked up per query.
Durations come from one monotonic clock read before and one after the call.
"""

cdef extern from "dp_clock.h":
    double dp_clock() nogil

__all__ = [
    "NOARG",
    "CountingIterator",
    "clock",
    "instrument_execute",
    "instrument_executemany",
    "instrument_wrapper",
]

#: "No params argument was passed": Django calls ``execute(sql)`` when params is None.
NOARG = object()
cdef object _NOARG = NOARG


def clock():
    """The monotonic clock the fast path reads, in seconds."""
    return dp_clock()


cdef class CountingIterator:
    """Iterates a one-shot iterable once, counting what the driver takes from it."""

    cdef object _it
    cdef readonly Py_ssize_t n

    def __cinit__(self, iterable):
        self._it = iter(iterable)
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._it)
        self.n += 1
        return item


def instrument_execute(real, executes not None, duration not None, on_error not None):
    """An ``execute(self, query, params=…, **kwargs)`` that calls ``real`` and records it.

    ``executes`` is a Counter cell and ``duration`` a Histogram cell; ``on_error(exc)``
    (never raises) counts an exception, which is then re-raised unchanged.
    """
    inc = executes.inc
    observe = duration.observe

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
            observe(dp_clock() - t0)
            on_error(exc)
            raise
        observe(dp_clock() - t0)
        return result

    return execute


def instrument_executemany(real, executes not None, many not None, duration not None, on_error not None):
    """An ``executemany(self, query, param_list, **kwargs)`` counting one per parameter set.

    A sized ``param_list`` is counted up front and passed through untouched; any
    other iterable (a generator) is handed to the driver inside a
    :class:`CountingIterator`, so it is consumed once, and counted afterwards.
    """
    executes_inc = executes.inc
    many_inc = many.inc
    observe = duration.observe

    def executemany(self, query, param_list, *args, **kwargs):
        cdef double t0
        cdef Py_ssize_t n = -1
        cdef CountingIterator counting = None
        try:
            n = len(param_list)
        except TypeError:
            counting = CountingIterator(param_list)
            param_list = counting
        else:
            executes_inc(n)
            many_inc(n)
        t0 = dp_clock()
        try:
            result = real(self, query, param_list, *args, **kwargs)
        except BaseException as exc:
            observe(dp_clock() - t0)
            if counting is not None:
                executes_inc(counting.n)
                many_inc(counting.n)
            on_error(exc)
            raise
        observe(dp_clock() - t0)
        if counting is not None:
            executes_inc(counting.n)
            many_inc(counting.n)
        return result

    return executemany


def instrument_wrapper(executes not None, many not None, duration not None, on_error not None):
    """A Django execute wrapper, ``wrapper(execute, sql, params, many, context)``, that records each call.

    The protocol of ``connection.execute_wrappers``: ``execute`` is the next
    wrapper or Django's executor, and is called exactly as Django would have
    called it. ``many`` calls count one per parameter set, as ``executemany``.
    """
    executes_inc = executes.inc
    many_inc = many.inc
    observe = duration.observe

    def wrapper(execute, sql, params, is_many, context):
        cdef double t0
        cdef Py_ssize_t n
        cdef CountingIterator counting = None
        if is_many:
            try:
                n = len(params)
            except TypeError:
                counting = CountingIterator(params)
                params = counting
            else:
                executes_inc(n)
                many_inc(n)
        else:
            executes_inc()
        t0 = dp_clock()
        try:
            result = execute(sql, params, is_many, context)
        except BaseException as exc:
            observe(dp_clock() - t0)
            if counting is not None:
                executes_inc(counting.n)
                many_inc(counting.n)
            on_error(exc)
            raise
        observe(dp_clock() - t0)
        if counting is not None:
            executes_inc(counting.n)
            many_inc(counting.n)
        return result

    return wrapper
