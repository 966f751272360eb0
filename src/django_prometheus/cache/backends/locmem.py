"""Django's local-memory cache, instrumented."""

from django.core.cache.backends import locmem

from django_prometheus.cache.backends._instrumented import InstrumentedCacheMixin


class LocMemCache(InstrumentedCacheMixin, locmem.LocMemCache):
    prometheus_backend = "locmem"
