"""django-memcached-consul's memcached cache, instrumented."""

try:
    from django_memcached_consul import memcached as consul_memcached
except ImportError as exc:
    raise ImportError(
        "django_prometheus.cache.backends.django_memcached_consul.MemcachedCache needs the "
        "'django-memcached-consul' package (pip install django-memcached-consul)."
    ) from exc
except AttributeError as exc:
    # It subclasses django.core.cache.backends.memcached.MemcachedCache, removed in Django 4.1.
    raise ImportError(
        "django-memcached-consul is installed but cannot be imported: it needs Django's "
        f"python-memcached MemcachedCache, which this Django no longer has ({exc})."
    ) from exc

from django_prometheus.cache.backends.memcached import MemcachedPrometheusCacheMixin


class MemcachedCache(MemcachedPrometheusCacheMixin, consul_memcached.MemcachedCache):
    prometheus_backend = "django_memcached_consul"
