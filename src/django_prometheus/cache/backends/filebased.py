"""Django's file-based cache, instrumented."""

from django.core.cache.backends import filebased

from django_prometheus.cache.backends._instrumented import InstrumentedCacheMixin


class FileBasedCache(InstrumentedCacheMixin, filebased.FileBasedCache):
    prometheus_backend = "filebased"
