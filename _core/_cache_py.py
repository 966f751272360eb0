"""Per-operation cache recording, pure Python: the twin of ``_cache_c.pyx`` (same names, same behaviour).

Only the outermost of nested operations is recorded: it puts a ``Call`` in a
context variable (which follows ``sync_to_async`` into its thread, asyncio
tasks and greenlets); calls made while one is there record nothing of their
own but the failures they see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from ._cells_py import Counter, Histogram

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

#: What an instrumented get passes the backend as ``default``: getting it back is a miss, so a
#: stored falsy value or ``None`` is a hit (docs/install.md, What differs, 1).
MISSING: Any = object()

#: The outermost cache operation in progress in this context, if any.
CURRENT: ContextVar[Call] = ContextVar("django_prometheus_cache_operation")

clock = time.perf_counter

# The request whose cache operations are being added up in this context (Server-Timing), or None.
_request: ContextVar[RequestOps | None] = ContextVar("django_prometheus.cache.request", default=None)
# Set by the first begin_request(), never cleared: until then an operation pays this one check.
_accounting = [False]


class RequestOps:
    """What one request's outermost cache operations took: how many, and seconds in all."""

    __slots__ = ("_token", "operations", "seconds")

    def __init__(self) -> None:
        self.operations = 0
        self.seconds = 0.0
        self._token: Any = None


def begin_request() -> RequestOps:
    """Start adding up the cache operations of the current context (and of contexts copied from it)."""
    state = RequestOps()
    state._token = _request.set(state)
    _accounting[0] = True
    return state


def end_request(state: RequestOps) -> None:
    """Stop adding up ``state``; its counts are final."""
    token, state._token = state._token, None
    if token is None:
        return
    try:
        _request.reset(token)
    except (ValueError, RuntimeError):  # ended in another context than it began in
        if _request.get() is state:
            _request.set(None)


def _account(dt: float) -> None:
    state = _request.get()
    if state is not None and state._token is not None:
        state.operations += 1
        state.seconds += dt


def observe(duration: Histogram, t0: float) -> None:
    """Observe an outermost operation's time in ``duration`` (and in the request's sum, if one is kept)."""
    dt = clock() - t0
    duration.observe(dt)
    if _accounting[0]:
        _account(dt)


class Call:
    """One outermost operation in progress; the calls it makes note their failures here."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed = False


def note_failure() -> None:
    """Tell the operation in progress that it failed, though nothing was raised (a swallowed error)."""
    current = CURRENT.get(None)
    if current is not None:
        current.failed = True


_observe_op = observe


def _counter(cell: Any) -> Counter:
    if not isinstance(cell, Counter):
        raise TypeError(f"expected a core Counter cell, got {type(cell).__name__}")
    return cell


def _histogram(cell: Any) -> Histogram:
    if not isinstance(cell, Histogram):
        raise TypeError(f"expected a core Histogram cell, got {type(cell).__name__}")
    return cell


# --- upstream's four families alone (PROMETHEUS_CACHE_OPERATION_METRICS off) ---------------------


def count_get(
    real_get: Callable[..., Any],
    gets: Counter,
    hits: Counter,
    misses: Counter,
    fails: Counter,
    interrupted: Any = MISSING,
    takes_kwargs: bool = True,
) -> Callable[..., Any]:
    """Wrap a cache backend's ``get`` so that each call counts get + hit/miss/fail.

    ``real_get(key, MISSING, version, **kwargs)`` is called; getting ``MISSING``
    back is a miss (so stored falsy values and ``None`` are hits), getting
    ``interrupted`` back is a failure the backend chose to swallow (django-redis'
    ``IGNORE_EXCEPTIONS``), and an exception is counted and re-raised unchanged.
    Without ``takes_kwargs`` the get takes ``(key, default=None, version=None)``
    only, as Django's own backends' do.
    """
    for cell in (gets, hits, misses, fails):
        _counter(cell)

    def counted(value: Any, default: Any) -> Any:
        gets.inc()
        if value is MISSING:
            misses.inc()
            return default
        if value is interrupted:
            fails.inc()
            return default
        hits.inc()
        return value

    def get_kw(key: Any, default: Any = None, version: Any = None, **kwargs: Any) -> Any:
        try:
            value = real_get(key, MISSING, version, **kwargs)
        except Exception:
            gets.inc()
            fails.inc()
            raise
        return counted(value, default)

    def get(key: Any, default: Any = None, version: Any = None) -> Any:
        try:
            value = real_get(key, MISSING, version)
        except Exception:
            gets.inc()
            fails.inc()
            raise
        return counted(value, default)

    return get_kw if takes_kwargs else get


def count_get_many(
    requested: Sequence[Any], found: int, gets: Counter, hits: Counter, misses: Counter
) -> None:
    """Count a native ``get_many``: each distinct requested key is one get and one hit or miss."""
    n = len(set(requested))
    _counter(gets).inc(n)
    _counter(hits).inc(found)
    _counter(misses).inc(n - found)


# --- upstream's four families and the get operation's (PROMETHEUS_CACHE_OPERATION_METRICS on) -----


def instrument_get(
    real_get: Callable[..., Any],
    gets: Counter,
    hits: Counter,
    misses: Counter,
    fails: Counter,
    interrupted: Any,
    hit: Counter,
    miss: Counter,
    error: Counter,
    duration: Histogram,
    takes_kwargs: bool = False,
) -> Callable[..., Any]:
    """A backend's ``get`` recording upstream's four families and the ``get`` operation.

    As ``count_get``: ``real_get(key, MISSING, version[, **kwargs])`` is
    called, ``MISSING`` back is a miss, ``interrupted`` back a swallowed failure,
    an exception is counted and re-raised unchanged. Without ``takes_kwargs`` the
    get takes ``(key, default=None, version=None)`` only, as Django's backends' do.
    """
    for cell in (gets, hits, misses, fails, hit, miss, error):
        _counter(cell)
    _histogram(duration)
    get_current = CURRENT.get

    def record(key: Any, default: Any, version: Any, kwargs: dict[str, Any]) -> Any:
        current = get_current(None)
        t0 = clock()
        try:
            value = real_get(key, MISSING, version, **kwargs)
        except Exception:
            gets.inc()
            fails.inc()
            if current is None:
                _observe_op(duration, t0)
                error.inc()
            else:
                current.failed = True
            raise
        if current is None:
            _observe_op(duration, t0)
        gets.inc()
        if value is MISSING:
            misses.inc()
            if current is None:
                miss.inc()
            return default
        if value is interrupted:
            fails.inc()
            if current is None:
                error.inc()
            else:
                current.failed = True
            return default
        hits.inc()
        if current is None:
            hit.inc()
        return value

    if takes_kwargs:

        def get_kw(key: Any, default: Any = None, version: Any = None, **kwargs: Any) -> Any:
            return record(key, default, version, kwargs)

        return get_kw

    def get(key: Any, default: Any = None, version: Any = None) -> Any:
        return record(key, default, version, {})

    return get


def _record_op(
    real: Callable[..., Any], ok: Counter, miss: Counter | None, error: Counter, duration: Histogram
) -> Callable[..., Any]:
    # miss is None: an operation counted ok/error; else has_key, counted ok (a hit) or miss.
    get_current = CURRENT.get

    def op(*args: Any, **kwargs: Any) -> Any:
        if get_current(None) is not None:
            return real(*args, **kwargs)
        current = Call()
        token = CURRENT.set(current)
        t0 = clock()
        try:
            result = real(*args, **kwargs)
        except Exception:
            _observe_op(duration, t0)
            error.inc()
            raise
        finally:
            CURRENT.reset(token)
        _observe_op(duration, t0)
        if current.failed:
            error.inc()
        elif miss is not None and not result:
            miss.inc()
        else:
            ok.inc()
        return result

    return op


def instrument_op(
    real: Callable[..., Any], ok: Counter, error: Counter, duration: Histogram
) -> Callable[..., Any]:
    """``real(*args, **kwargs)``, counted ``ok`` or ``error`` and timed, unless inside another operation."""
    return _record_op(real, _counter(ok), None, _counter(error), _histogram(duration))


def instrument_has_key(
    real: Callable[..., Any], hit: Counter, miss: Counter, error: Counter, duration: Histogram
) -> Callable[..., Any]:
    """``real(*args, **kwargs)`` counted ``hit`` when it returns true, else ``miss`` (or ``error``)."""
    return _record_op(real, _counter(hit), _counter(miss), _counter(error), _histogram(duration))


def _distinct(keys: Any) -> int:
    try:
        return len(set(keys))
    except TypeError:  # unhashable keys: the backend decides what that means
        return len(keys)


def instrument_get_many(
    real: Callable[..., Any], hit: Counter, miss: Counter, error: Counter, duration: Histogram
) -> Callable[..., Any]:
    """``real(self, keys, *args, **kwargs)``: each distinct key counted a ``hit`` (found) or a ``miss``."""
    _counter(hit), _counter(miss), _counter(error), _histogram(duration)
    get_current = CURRENT.get

    def get_many(self: Any, keys: Any, *args: Any, **kwargs: Any) -> Any:
        if get_current(None) is not None:
            return real(self, keys, *args, **kwargs)
        if type(keys) is not list and type(keys) is not tuple:
            keys = list(keys)  # a generator is read here once; the backend gets the same keys
        current = Call()
        token = CURRENT.set(current)
        t0 = clock()
        try:
            result = real(self, keys, *args, **kwargs)
        except Exception:
            _observe_op(duration, t0)
            error.inc(_distinct(keys))
            raise
        finally:
            CURRENT.reset(token)
        _observe_op(duration, t0)
        n = _distinct(keys)
        if current.failed:
            error.inc(n)
            return result
        try:
            found = min(len(result), n)
        except TypeError:
            return result
        hit.inc(found)
        miss.inc(n - found)
        return result

    return get_many
