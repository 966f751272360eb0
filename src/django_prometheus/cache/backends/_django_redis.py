"""django-redis' cache, instrumented (imported only when that backend is configured)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

try:
    from django_redis import cache as django_redis_cache
    from django_redis.exceptions import ConnectionInterrupted
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "django_prometheus.cache.backends.redis.RedisCache needs the 'django-redis' package "
        "(pip install django-prometheus[redis]); Django's own Redis cache is "
        "django_prometheus.cache.backends.redis.NativeRedisCache."
    ) from exc

from django_prometheus._core._cells import record_get_many
from django_prometheus.cache.backends._instrumented import InstrumentedCacheMixin


class RedisCache(InstrumentedCacheMixin, django_redis_cache.RedisCache):
    prometheus_backend = "redis"

    def _prometheus_real_get(self) -> Any:
        # django-redis' _get() applies IGNORE_EXCEPTIONS and signals a swallowed
        # failure with CONNECTION_INTERRUPTED, which the core counts as a failure.
        _get = self._get

        def real_get(key: Any, default: Any, version: Any, client: Any = None) -> Any:
            return _get(key, default, version, client)

        return real_get

    def _prometheus_interrupted(self) -> Any:
        return django_redis_cache.CONNECTION_INTERRUPTED

    def get_many(self, keys: Iterable[Any], version: Any = None, client: Any = None) -> dict[Any, Any]:
        # django-redis' own get_many() hides an ignored failure as "all missed";
        # call its client directly and apply IGNORE_EXCEPTIONS as it would.
        keys = list(keys)
        cells = self._prometheus_cells
        try:
            found = self.client.get_many(keys, version=version, client=client)
        except ConnectionInterrupted as exc:
            n = len(set(keys))
            cells.gets.inc(n)
            cells.fails.inc(n)
            if self._ignore_exceptions:
                if self._log_ignored_exceptions:
                    self.logger.exception("Exception ignored")
                return {}
            raise exc.__cause__ from None  # what django-redis raises: the underlying error
        record_get_many(keys, len(found), cells.gets, cells.hits, cells.misses)
        return found
