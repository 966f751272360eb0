"""The behaviour every instrumented cache backend shares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from django_prometheus._core._cache import MISSING, count_get, count_get_many
from django_prometheus.cache import metrics, operations


class CacheCells:
    """The four counter cells of one backend label, resolved once."""

    __slots__ = ("fails", "gets", "hits", "misses")

    def __init__(self, backend: str) -> None:
        self.gets = metrics.django_cache_get_total.labels(backend)
        self.hits = metrics.django_cache_hits_total.labels(backend)
        self.misses = metrics.django_cache_misses_total.labels(backend)
        self.fails = metrics.django_cache_get_fail_total.labels(backend)


class InstrumentedCacheMixin:
    """Put first in the MRO of a Django cache backend.

    ``__init__`` shadows the class' ``get`` with the core's instrumented get bound
    to this instance, so a get costs one C call more than the bare backend. The
    class' own ``get`` (overrides in user subclasses included) is what it wraps.
    With ``PROMETHEUS_CACHE_OPERATION_METRICS`` every operation is shadowed so
    (see ``operations``), ``get`` by one recorder for both sets of families.
    """

    #: The value of the ``backend`` label.
    prometheus_backend: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prometheus_cells = cells = CacheCells(self.prometheus_backend)
        if operations.enabled():
            operations.install(self, operations.caller_alias(), cells)
            return
        self.get = count_get(
            self._prometheus_real_get(), cells.gets, cells.hits, cells.misses, cells.fails,
            self._prometheus_interrupted(), operations.takes_kwargs(type(self).get),
        )  # fmt: skip

    def _prometheus_real_get(self) -> Any:
        """The callable ``(key, default, version, **kwargs)`` that the instrumented get calls."""
        return type(self).get.__get__(self, type(self))

    def _prometheus_interrupted(self) -> Any:
        """What the real get returns for a failure it swallowed (none by default)."""
        return MISSING

    def _prometheus_operation(self, name: str) -> Any:
        """The function ``(self, *args, **kwargs)`` the recorder of operation ``name`` (not get) calls."""
        return getattr(type(self), name)

    def get_or_set(self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> Any:
        # Django's get_or_set() gets the key again after add(); count the lookup once.
        value = self.get(key, MISSING, version=version)
        if value is MISSING:
            if callable(default):
                default = default()
            self.add(key, default, timeout=timeout, version=version)  # type: ignore[attr-defined]
            return type(self).get(self, key, default, version=version)
        return value

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        value = await self.aget(key, MISSING, version=version)  # type: ignore[attr-defined]
        if value is MISSING:
            if callable(default):
                default = default()
            await self.aadd(key, default, timeout=timeout, version=version)  # type: ignore[attr-defined]
            return await sync_to_async(type(self).get, thread_sensitive=True)(
                self, key, default, version=version
            )
        return value


class NativeGetManyMixin(InstrumentedCacheMixin):
    """For backends with a native get_many: each distinct requested key counts once."""

    def get_many(self, keys: Iterable[Any], version: Any = None, **kwargs: Any) -> dict[Any, Any]:
        keys = list(keys)
        cells = self._prometheus_cells
        try:
            found = super().get_many(keys, version=version, **kwargs)  # type: ignore[misc]
        except Exception:
            n = len(set(keys))
            cells.gets.inc(n)
            cells.fails.inc(n)
            raise
        count_get_many(keys, len(found), cells.gets, cells.hits, cells.misses)
        return found
