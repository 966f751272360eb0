"""django-redis' cache, instrumented (imported only when that backend is configured)."""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

try:
    from django_redis import cache as django_redis_cache
    from django_redis.exceptions import ConnectionInterrupted
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "django_prometheus.cache.backends.redis.RedisCache needs the 'django-redis' package "
        "(pip install django-prometheus-compiled[redis]); Django's own Redis cache is "
        "django_prometheus.cache.backends.redis.NativeRedisCache."
    ) from exc

from django_prometheus._core._cache import count_get_many, note_failure
from django_prometheus.cache.backends._instrumented import InstrumentedCacheMixin

_INTERRUPTED = django_redis_cache.CONNECTION_INTERRUPTED
# The interruptions seen by _get() during the overriding get() in progress, if any.
_interruptions: ContextVar[list[bool] | None] = ContextVar("dp_redis_interruptions", default=None)


class RedisCache(InstrumentedCacheMixin, django_redis_cache.RedisCache):
    prometheus_backend = "redis"

    def _prometheus_real_get(self) -> Any:
        # django-redis' _get() applies IGNORE_EXCEPTIONS and signals a swallowed
        # failure with CONNECTION_INTERRUPTED, which the core counts as a failure.
        cls = type(self)
        if cls.get is not django_redis_cache.RedisCache.get:
            return self._prometheus_overriding_get(cls.get.__get__(self, cls))
        _get = self._get

        def real_get(key: Any, default: Any, version: Any, client: Any = None) -> Any:
            return _get(key, default, version, client)

        return real_get

    def _prometheus_overriding_get(self, override: Any) -> Any:
        """A subclass' own get() (reaching django-redis' _get() through super()), failures still told apart.

        django-redis' get() turns a swallowed failure into the default it was given,
        so this instance's _get() notes the interruption for the call in progress
        (a context variable: right under threads, asyncio and greenlets alike).
        """
        class_get = type(self)._get.__get__(self, type(self))

        def _get(key: Any, default: Any, version: Any, client: Any) -> Any:
            value = class_get(key, default, version, client)
            if value is _INTERRUPTED:
                seen = _interruptions.get()
                if seen is not None:
                    seen.append(True)
            return value

        self._get = _get

        def real_get(key: Any, default: Any, version: Any, **kwargs: Any) -> Any:
            seen: list[bool] = []
            token = _interruptions.set(seen)
            try:
                value = override(key, default, version, **kwargs)
            finally:
                _interruptions.reset(token)
            # A failure the override passed on as a miss is a failure; a value it
            # made up itself after one is what it returns.
            return _INTERRUPTED if seen and value is default else value

        return real_get

    def _prometheus_interrupted(self) -> Any:
        return _INTERRUPTED

    def _prometheus_operation(self, name: str) -> Any:
        # django-redis' own operations swallow a failure under IGNORE_EXCEPTIONS
        # (omit_exception): decorate the undecorated method again, so that the
        # recorder hears of the failure before the decorator hides it.
        method = getattr(type(self), name)
        undecorated = getattr(method, "__wrapped__", None)
        if undecorated is None or method is not getattr(django_redis_cache.RedisCache, name, None):
            return super()._prometheus_operation(name)

        def noting(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return undecorated(self, *args, **kwargs)
            except ConnectionInterrupted:
                note_failure()
                raise

        return django_redis_cache.omit_exception(noting)

    def get_many(self, keys: Iterable[Any], version: Any = None, client: Any = None) -> dict[Any, Any]:
        # django-redis' own get_many() hides an ignored failure as "all missed";
        # call its client directly and apply IGNORE_EXCEPTIONS as it would.
        keys = list(keys)
        cells = self._prometheus_cells
        try:
            found = self.client.get_many(keys, version=version, client=client)
        except Exception as exc:
            n = len(set(keys))
            cells.gets.inc(n)
            cells.fails.inc(n)
            if not isinstance(exc, ConnectionInterrupted):
                # not a connection failure, which django-redis passes on as it is (a Redis
                # Cluster refusing an MGET across hash slots, say): failed all the same
                raise
            if self._ignore_exceptions:
                note_failure()
                if self._log_ignored_exceptions:
                    self.logger.exception("Exception ignored")
                return {}
            raise exc.__cause__ from None  # what django-redis raises: the underlying error
        count_get_many(keys, len(found), cells.gets, cells.hits, cells.misses)
        return found
