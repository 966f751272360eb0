"""Cache backends: the cost that instrumentation adds to ``get()``, with operation metrics off and on."""

from __future__ import annotations

from functools import partial
from typing import Any

from ._harness import IMPLS, Case, Op, prepare

LOCMEM = {
    "bare": "django.core.cache.backends.locmem.LocMemCache",
    "instrumented": "django_prometheus.cache.backends.locmem.LocMemCache",
}


def _locmem_settings(impl: str) -> dict[str, Any]:
    backend = LOCMEM["bare" if impl == "bare" else "instrumented"]
    return {"CACHES": {"default": {"BACKEND": backend, "LOCATION": "benchmarks"}}}


def _locmem_operations_settings(impl: str) -> dict[str, Any]:
    # PROMETHEUS_CACHE_OPERATION_METRICS is ours: bare Django and upstream ignore it.
    return {**_locmem_settings(impl), "PROMETHEUS_CACHE_OPERATION_METRICS": True}


def _bound_get(key: str) -> Op:
    from django.core.cache import caches

    # The backend's own bound method: django.core.cache.cache would add the
    # same proxy lookup to every impl and dilute the difference we measure.
    return partial(caches["default"].get, key)


def _build_get_hit(impl: str) -> Op:
    from django.core.cache import caches

    caches["default"].set("hit", b"value", None)
    return _bound_get("hit")


def _build_get_miss(impl: str) -> Op:
    return _bound_get("miss")


CACHE_GET_HIT = Case("cache_get_hit", _locmem_settings, _build_get_hit)
CACHE_GET_MISS = Case("cache_get_miss", _locmem_settings, _build_get_miss)
CACHE_GET_HIT_OPS = Case("cache_get_hit_operations", _locmem_operations_settings, _build_get_hit)
CACHE_GET_MISS_OPS = Case("cache_get_miss_operations", _locmem_operations_settings, _build_get_miss)
CASES = [CACHE_GET_HIT, CACHE_GET_MISS, CACHE_GET_HIT_OPS, CACHE_GET_MISS_OPS]


class LocMemGet:
    """``LocMemCache.get()`` per implementation (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.get_hit = prepare(CACHE_GET_HIT, impl)
        self.get_miss = prepare(CACHE_GET_MISS, impl)

    def time_get_hit(self, impl: str) -> None:
        self.get_hit()

    def time_get_miss(self, impl: str) -> None:
        self.get_miss()

    def peakmem_get_hit_10k(self, impl: str) -> None:
        # Steady-state calls must not grow memory (no per-call label tuples kept).
        for _ in range(10_000):
            self.get_hit()


class LocMemGetOperations:
    """``LocMemCache.get()`` with ``PROMETHEUS_CACHE_OPERATION_METRICS`` on (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.get_hit = prepare(CACHE_GET_HIT_OPS, impl)
        self.get_miss = prepare(CACHE_GET_MISS_OPS, impl)

    def time_get_hit(self, impl: str) -> None:
        self.get_hit()

    def time_get_miss(self, impl: str) -> None:
        self.get_miss()
