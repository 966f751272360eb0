"""Django's memcached caches (pymemcache, pylibmc), instrumented."""

from django.core.cache.backends import memcached

from django_prometheus.cache.backends._instrumented import NativeGetManyMixin


class MemcachedPrometheusCacheMixin(NativeGetManyMixin):
    """Instruments any Django memcached backend: put it first in the bases."""

    prometheus_backend = "memcached"


class PyMemcacheCache(MemcachedPrometheusCacheMixin, memcached.PyMemcacheCache):
    pass


class PyLibMCCache(MemcachedPrometheusCacheMixin, memcached.PyLibMCCache):
    pass
