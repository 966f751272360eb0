"""Redis caches, instrumented: django-redis' ``RedisCache`` and Django's own (``NativeRedisCache``).

django-redis is imported only when its backend is used, so ``NativeRedisCache``
works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.cache.backends import redis as django_redis_backend

from django_prometheus.cache.backends._instrumented import NativeGetManyMixin

__all__ = ["NativeRedisCache", "RedisCache"]


class NativeRedisCache(NativeGetManyMixin, django_redis_backend.RedisCache):
    prometheus_backend = "native_redis"


def _django_redis_backend() -> type:
    from django_prometheus.cache.backends._django_redis import RedisCache

    return RedisCache


if TYPE_CHECKING:
    from django_prometheus.cache.backends._django_redis import RedisCache
else:

    def __getattr__(name: str) -> Any:
        if name == "RedisCache":
            return _django_redis_backend()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
