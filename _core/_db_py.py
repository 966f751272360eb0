"""Pure-Python twin of the compiled DB fast path (``_db_c.pyx``): same API, same behaviour."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from time import perf_counter as clock
from typing import Any

__all__ = [
    "NOARG",
    "CountingIterator",
    "clock",
    "instrument_execute",
    "instrument_executemany",
    "instrument_wrapper",
]

#: "No params argument was passed": Django calls ``execute(sql)`` when params is None.
NOARG: Any = object()


class CountingIterator:
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


def instrument_execute(real: Callable[..., Any], executes: Any, duration: Any,
                       on_error: Callable[[BaseException], None]) -> Callable[..., Any]:  # fmt: skip
    """An ``execute(self, query, params=…, **kwargs)`` that calls ``real`` and records it.

    ``executes`` is a Counter cell and ``duration`` a Histogram cell; ``on_error(exc)``
    (never raises) counts an exception, which is then re-raised unchanged.
    """
    inc = executes.inc
    observe = duration.observe

    def execute(self: Any, query: Any, params: Any = NOARG, **kwargs: Any) -> Any:
        inc()
        t0 = clock()
        try:
            if kwargs:
                if params is NOARG:
                    result = real(self, query, **kwargs)
                else:
                    result = real(self, query, params, **kwargs)
            elif params is NOARG:
                result = real(self, query)
            else:
                result = real(self, query, params)
        except BaseException as exc:
            observe(clock() - t0)
            on_error(exc)
            raise
        observe(clock() - t0)
        return result

    return execute


def instrument_executemany(real: Callable[..., Any], executes: Any, many: Any, duration: Any,
                           on_error: Callable[[BaseException], None]) -> Callable[..., Any]:  # fmt: skip
    """An ``executemany(self, query, param_list, **kwargs)`` counting one per parameter set.

    A sized ``param_list`` is counted up front and passed through untouched; any
    other iterable (a generator) is handed to the driver inside a
    :class:`CountingIterator`, so it is consumed once, and counted afterwards.
    """
    executes_inc = executes.inc
    many_inc = many.inc
    observe = duration.observe

    def executemany(self: Any, query: Any, param_list: Any, *args: Any, **kwargs: Any) -> Any:
        counting = None
        try:
            n = len(param_list)
        except TypeError:
            counting = param_list = CountingIterator(param_list)
        else:
            executes_inc(n)
            many_inc(n)
        t0 = clock()
        try:
            result = real(self, query, param_list, *args, **kwargs)
        except BaseException as exc:
            observe(clock() - t0)
            if counting is not None:
                executes_inc(counting.n)
                many_inc(counting.n)
            on_error(exc)
            raise
        observe(clock() - t0)
        if counting is not None:
            executes_inc(counting.n)
            many_inc(counting.n)
        return result

    return executemany


def instrument_wrapper(executes: Any, many: Any, duration: Any,
                       on_error: Callable[[BaseException], None]) -> Callable[..., Any]:  # fmt: skip
    """A Django execute wrapper, ``wrapper(execute, sql, params, many, context)``, that records each call.

    The protocol of ``connection.execute_wrappers``: ``execute`` is the next
    wrapper or Django's executor, and is called exactly as Django would have
    called it. ``many`` calls count one per parameter set, as ``executemany``.
    """
    executes_inc = executes.inc
    many_inc = many.inc
    observe = duration.observe

    def wrapper(execute: Callable[..., Any], sql: Any, params: Any, is_many: bool, context: Any) -> Any:
        counting = None
        if is_many:
            try:
                n = len(params)
            except TypeError:
                counting = params = CountingIterator(params)
            else:
                executes_inc(n)
                many_inc(n)
        else:
            executes_inc()
        t0 = clock()
        try:
            result = execute(sql, params, is_many, context)
        except BaseException as exc:
            observe(clock() - t0)
            if counting is not None:
                executes_inc(counting.n)
                many_inc(counting.n)
            on_error(exc)
            raise
        observe(clock() - t0)
        if counting is not None:
            executes_inc(counting.n)
            many_inc(counting.n)
        return result

    return wrapper
