"""Every cache operation per alias (``PROMETHEUS_CACHE_OPERATION_METRICS``): the cells and the wrappers.

With the setting on, a backend's ``__init__`` shadows each operation below with
a core recorder bound to that operation's cells (resolved once per alias and
backend), as it shadows ``get`` when the setting is off: nothing is looked up
per call. Only the outermost of nested operations is recorded (see
``_core/_cache_c.pyx``), so what Django routes through another operation
(``BaseCache.get_many`` through ``get``, the async twins through
``sync_to_async`` of the sync ones) counts once, as what the caller called.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable
from types import MethodType
from typing import Any

from django.core.cache import CacheHandler

from django_prometheus._core import _cache
from django_prometheus.cache import metrics
from django_prometheus.conf import get_or_default

SYNC_OPERATIONS = (
    "get", "get_many", "set", "add", "set_many", "delete", "delete_many",
    "touch", "incr", "decr", "has_key", "clear",
)  # fmt: skip
ASYNC_OPERATIONS = tuple("a" + name for name in SYNC_OPERATIONS)
#: Operations whose result is a hit or a miss (else ok), and their async twins.
READS = frozenset(("get", "get_many", "has_key", "aget", "aget_many", "ahas_key"))
#: The ``alias`` of a backend Django's cache handler did not create (instantiated by hand).
UNNAMED = "<unnamed>"

_CREATE_CONNECTION = CacheHandler.create_connection.__code__


def enabled() -> bool:
    """Whether backends created now record every operation."""
    return get_or_default("PROMETHEUS_CACHE_OPERATION_METRICS")


def caller_alias() -> str:
    """The ``CACHES`` key Django's ``CacheHandler.create_connection(alias)`` is creating a backend for.

    Django hands a backend only its location and parameters, so the alias is
    read from the handler's frame, once per backend instance.
    """
    frame = sys._getframe(1)
    for _ in range(32):
        if frame is None:
            break
        if frame.f_code is _CREATE_CONNECTION:
            alias = frame.f_locals.get("alias")
            return alias if isinstance(alias, str) else UNNAMED
        frame = frame.f_back
    return UNNAMED


_cells: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}
_lock = threading.Lock()
_registered = False


def operation_cells(alias: str, backend: str, name: str) -> tuple[Any, Any, Any, Any]:
    """``(ok or hit, miss or None, error, duration)`` of one operation, made on first use.

    The first also registers the two families, so none is exposed while the setting is off.
    """
    global _registered
    key = (alias, backend, name)
    found = _cells.get(key)
    if found is None:
        with _lock:
            if not _registered:
                from prometheus_client import REGISTRY

                REGISTRY.register(metrics.django_cache_operations_total)
                REGISTRY.register(metrics.django_cache_operation_duration_seconds)
                _registered = True
            found = _cells.get(key)
            if found is None:
                ops = metrics.django_cache_operations_total
                read = name in READS
                found = _cells[key] = (
                    ops.labels(alias, backend, name, "hit" if read else "ok"),
                    ops.labels(alias, backend, name, "miss") if read else None,
                    ops.labels(alias, backend, name, "error"),
                    metrics.django_cache_operation_duration_seconds.labels(alias, backend, name),
                )
    return found


def takes_kwargs(method: Any) -> bool:
    """Whether a ``get`` takes more than ``(key, default, version)`` (django-redis' ``client``, **kwargs)."""
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - not introspectable: take everything
        return True
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    extra = [p for p in params if p.kind in (p.VAR_KEYWORD, p.KEYWORD_ONLY, p.VAR_POSITIONAL)]
    return bool(extra) or names[1:] != ["key", "default", "version"]


def install(cache: Any, alias: str, upstream: Any) -> None:
    """Shadow every operation of ``cache`` (an instrumented backend) with its recorder.

    ``get``'s is bound now; the others on their first call, so that an alias shows
    series for the operations it performs (async twins in a WSGI app, say) only.
    """
    cls, backend = type(cache), cache.prometheus_backend
    hit, miss, error, duration = operation_cells(alias, backend, "get")
    cache.get = _cache.instrument_get(
        cache._prometheus_real_get(), upstream.gets, upstream.hits, upstream.misses, upstream.fails,
        cache._prometheus_interrupted(), hit, miss, error, duration, takes_kwargs(cls.get),
    )  # fmt: skip
    for name in SYNC_OPERATIONS[1:]:
        setattr(cache, name, MethodType(_sync_binder(cache, alias, name), cache))
    for name in ASYNC_OPERATIONS:
        setattr(cache, name, _async_binder(cache, alias, name))


def _sync_recorder(cache: Any, alias: str, name: str) -> Callable[..., Any]:
    real = cache._prometheus_operation(name)
    ok, miss, error, duration = operation_cells(alias, cache.prometheus_backend, name)
    if name == "get_many":
        return _cache.instrument_get_many(real, ok, miss, error, duration)
    if name == "has_key":
        return _cache.instrument_has_key(real, ok, miss, error, duration)
    return _cache.instrument_op(real, ok, error, duration)


def _sync_binder(cache: Any, alias: str, name: str) -> Callable[..., Any]:
    # Bound methods, binder and recorder alike: Django reads ``self.get_many.__func__``
    # (has_key, incr, set_many, delete_many too) to choose how an async twin runs,
    # and both of its routes count once.
    bound: list[Callable[..., Any]] = []

    def first_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not bound:
            bound.append(_sync_recorder(cache, alias, name))
            setattr(cache, name, MethodType(bound[0], cache))
        return bound[0](self, *args, **kwargs)

    return first_call


def _async_recorder(cache: Any, alias: str, name: str) -> Callable[..., Any]:
    cls = type(cache)
    real = getattr(cls, name).__get__(cache, cls)
    ok, miss, error, duration = operation_cells(alias, cache.prometheus_backend, name)
    if name == "aget":
        return _async_get(real, ok, miss, error, duration)
    if name == "aget_many":
        return _async_get_many(real, ok, miss, error, duration)
    return _async_op(real, ok, miss, error, duration)


def _async_binder(cache: Any, alias: str, name: str) -> Callable[..., Any]:
    bound: list[Callable[..., Any]] = []

    async def first_call(*args: Any, **kwargs: Any) -> Any:
        if not bound:
            bound.append(_async_recorder(cache, alias, name))
            setattr(cache, name, bound[0])
        return await bound[0](*args, **kwargs)

    return first_call


# The async twins: Django runs them as sync_to_async of the sync operation (whose
# recorder then sees this one in progress), so they are not hot enough for the core.


def _async_get(real: Any, hit: Any, miss: Any, error: Any, duration: Any) -> Callable[..., Any]:
    current_get, MISSING = _cache.CURRENT.get, _cache.MISSING

    async def aget(key: Any, default: Any = None, version: Any = None, **kwargs: Any) -> Any:
        if current_get(None) is not None:
            return await real(key, default, version, **kwargs)
        current = _cache.Call()
        token = _cache.CURRENT.set(current)
        t0 = _cache.clock()
        try:
            value = await real(key, MISSING, version, **kwargs)
        except Exception:
            _cache.observe(duration, t0)
            error.inc()
            raise
        finally:
            _cache.CURRENT.reset(token)
        _cache.observe(duration, t0)
        (error if current.failed else miss if value is MISSING else hit).inc()
        return default if value is MISSING else value

    return aget


def _distinct(keys: Any) -> int:
    try:
        return len(set(keys))
    except TypeError:
        return len(keys)


def _async_get_many(real: Any, hit: Any, miss: Any, error: Any, duration: Any) -> Callable[..., Any]:
    current_get = _cache.CURRENT.get

    async def aget_many(keys: Any, *args: Any, **kwargs: Any) -> Any:
        if current_get(None) is not None:
            return await real(keys, *args, **kwargs)
        if type(keys) is not list and type(keys) is not tuple:
            keys = list(keys)
        current = _cache.Call()
        token = _cache.CURRENT.set(current)
        t0 = _cache.clock()
        try:
            result = await real(keys, *args, **kwargs)
        except Exception:
            _cache.observe(duration, t0)
            error.inc(_distinct(keys))
            raise
        finally:
            _cache.CURRENT.reset(token)
        _cache.observe(duration, t0)
        n = _distinct(keys)
        if current.failed:
            error.inc(n)
        else:
            try:
                found = min(len(result), n)
            except TypeError:
                return result
            hit.inc(found)
            miss.inc(n - found)
        return result

    return aget_many


def _async_op(real: Any, ok: Any, miss: Any, error: Any, duration: Any) -> Callable[..., Any]:
    # miss is None: counted ok/error; else (ahas_key) ok is the hit cell.
    current_get = _cache.CURRENT.get

    async def op(*args: Any, **kwargs: Any) -> Any:
        if current_get(None) is not None:
            return await real(*args, **kwargs)
        current = _cache.Call()
        token = _cache.CURRENT.set(current)
        t0 = _cache.clock()
        try:
            result = await real(*args, **kwargs)
        except Exception:
            _cache.observe(duration, t0)
            error.inc()
            raise
        finally:
            _cache.CURRENT.reset(token)
        _cache.observe(duration, t0)
        if current.failed:
            error.inc()
        elif miss is not None and not result:
            miss.inc()
        else:
            ok.inc()
        return result

    return op
