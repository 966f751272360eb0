"""Pure-Python twin of the compiled DB fast path (``_db_c.pyx``): same API, same behaviour."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from time import perf_counter as _clock
from typing import Any

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

# "No params argument was passed": Django calls ``execute(sql)`` when params is None.
_NOARG: Any = object()

# The request being accounted in this context (ASGI task, sync_to_async thread), or None.
_current: ContextVar[RequestQueries | None] = ContextVar("django_prometheus.db.request", default=None)
# Set by the first begin_request(), never cleared: until then a query pays this one check.
_accounting = False


class RequestQueries:
    """What one request ran: queries (``executemany`` is one), seconds in the database, and
    whether one statement (same SQL text, parameters ignored) ran ``REPEAT_THRESHOLD`` times."""

    __slots__ = ("_seen", "_token", "queries", "repeated", "seconds")

    def __init__(self) -> None:
        self.queries = 0
        self.seconds = 0.0
        self.repeated = False
        self._seen: dict[Any, int] | None = {}
        self._token: Any = None

    def _add(self, sql: Any, dt: float) -> None:
        self.queries += 1
        self.seconds += dt
        seen = self._seen
        if seen is None:  # already repeated: nothing left to find
            return
        try:
            n = seen.get(sql, 0) + 1
            if n >= REPEAT_THRESHOLD:
                self.repeated = True
                self._seen = None
            elif n > 1 or len(seen) < MAX_STATEMENTS:
                seen[sql] = n
        except TypeError:  # an unhashable composed statement: counted, not tracked
            pass


def begin_request() -> RequestQueries:
    """Start accounting the queries of the current context (and of contexts copied from it)."""
    global _accounting
    state = RequestQueries()
    state._token = _current.set(state)
    _accounting = True
    return state


def end_request(state: RequestQueries) -> None:
    """Stop accounting ``state``; its counts are final (queries still running elsewhere are not added)."""
    token, state._token, state._seen = state._token, None, None
    if token is None:
        return
    try:
        _current.reset(token)
    except (ValueError, RuntimeError):  # ended in another context than it began in
        if _current.get() is state:
            _current.set(None)


def _account(sql: Any, dt: float) -> None:
    state = _current.get()
    if state is not None and state._token is not None:
        state._add(sql, dt)


def account_statement(sql: Any, seconds: float) -> None:
    """Add a statement the cursors do not see (``BEGIN``/``COMMIT``/``ROLLBACK`` sent by the
    driver's own calls) to the request being accounted in this context, if any."""
    if _accounting:
        _account(sql, seconds)


class _CountingIterator:
    """Iterates a one-shot iterable once, counting what the driver takes from it."""

    __slots__ = ("_it", "n")

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._it = iter(iterable)
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = next(self._it)
        self.n += 1
        return item


class _Recorder:
    """The cells one instrumented call records into, bound once (per cursor class, or per wrapper)."""

    __slots__ = ("executes_inc", "many_inc", "observe", "on_error")

    def __init__(self, executes: Any, many: Any, duration: Any, on_error: Callable[[BaseException], None]):
        self.executes_inc = executes.inc
        self.many_inc = many.inc if many is not None else None
        self.observe = duration.observe
        self.on_error = on_error

    def done(self, sql: Any, t0: float) -> None:
        dt = _clock() - t0
        self.observe(dt)
        if _accounting:
            _account(sql, dt)

    def failed(self, sql: Any, t0: float, exc: BaseException) -> None:
        self.done(sql, t0)
        self.on_error(exc)

    def many(self, call: Callable[..., Any], head: tuple, sql: Any, params: Any, tail: tuple,
             kwargs: dict) -> Any:  # fmt: skip
        """``call(*head, sql, params, *tail, **kwargs)``, one execute per parameter set.

        A sized ``params`` is counted up front and passed through untouched; any
        other iterable (a generator) is handed to the driver inside a counting
        iterator, so it is consumed once, and counted afterwards (docs/install.md, What differs, 6).
        """
        counting = None
        try:
            n = len(params)
        except TypeError:
            counting = params = _CountingIterator(params)
        else:
            self.executes_inc(n)
            self.many_inc(n)
        t0 = _clock()
        try:
            result = call(*head, sql, params, *tail, **kwargs)
        except BaseException as exc:
            self._settle(counting)
            self.failed(sql, t0, exc)
            raise
        self._settle(counting)
        self.done(sql, t0)
        return result

    def _settle(self, counting: _CountingIterator | None) -> None:
        if counting is not None:
            self.executes_inc(counting.n)
            self.many_inc(counting.n)


def instrument_execute(real: Callable[..., Any], executes: Any, duration: Any,
                       on_error: Callable[[BaseException], None]) -> Callable[..., Any]:  # fmt: skip
    """An ``execute(self, query, params=…, **kwargs)`` that calls ``real`` and records it.

    ``executes`` is a Counter cell and ``duration`` a Histogram cell; ``on_error(exc)``
    (never raises) counts an exception, which is then re-raised unchanged.
    """
    rec = _Recorder(executes, None, duration, on_error)
    inc, observe = rec.executes_inc, rec.observe

    def execute(self: Any, query: Any, params: Any = _NOARG, **kwargs: Any) -> Any:
        inc()
        t0 = _clock()
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
        # rec.done(query, t0), inline: this is the path every query takes.
        dt = _clock() - t0
        observe(dt)
        if _accounting:
            _account(query, dt)
        return result

    return execute


def instrument_executemany(real: Callable[..., Any], executes: Any, many: Any, duration: Any,
                           on_error: Callable[[BaseException], None]) -> Callable[..., Any]:  # fmt: skip
    """An ``executemany(self, query, param_list, **kwargs)`` counting one execute per parameter set.

    For the request being accounted it is one query.
    """
    rec = _Recorder(executes, many, duration, on_error)

    def executemany(self: Any, query: Any, param_list: Any, *args: Any, **kwargs: Any) -> Any:
        return rec.many(real, (self,), query, param_list, args, kwargs)

    return executemany


def instrument_wrapper(executes: Any, many: Any, duration: Any,
                       on_error: Callable[[BaseException], None]) -> Callable[..., Any]:  # fmt: skip
    """A Django execute wrapper, ``wrapper(execute, sql, params, many, context)``, that records each call.

    The protocol of ``connection.execute_wrappers``: ``execute`` is the next
    wrapper or Django's executor, and is called exactly as Django would have
    called it. ``many`` calls count one per parameter set, as ``executemany``.
    """
    rec = _Recorder(executes, many, duration, on_error)
    inc, observe = rec.executes_inc, rec.observe
    no_kwargs: dict = {}

    def wrapper(execute: Callable[..., Any], sql: Any, params: Any, is_many: bool, context: Any) -> Any:
        if is_many:
            return rec.many(execute, (), sql, params, (is_many, context), no_kwargs)
        inc()
        t0 = _clock()
        try:
            result = execute(sql, params, is_many, context)
        except BaseException as exc:
            rec.failed(sql, t0, exc)
            raise
        dt = _clock() - t0
        observe(dt)
        if _accounting:
            _account(sql, dt)
        return result

    return wrapper
