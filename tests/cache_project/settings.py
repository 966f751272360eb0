"""Settings for serving cache views with gunicorn or uvicorn, operation metrics on, real servers."""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.cache_project.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_prometheus"]
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
PROMETHEUS_CACHE_OPERATION_METRICS = True

_PREFIX = os.environ.get("DP_CACHE_TEST_PREFIX", "e2e")
CACHES = {
    "default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "sessions": {
        "BACKEND": "django_prometheus.cache.backends.redis.NativeRedisCache",
        "LOCATION": os.environ.get("DP_REDIS_URL", "redis://127.0.0.1:16379"),
        "KEY_PREFIX": _PREFIX,
    },
    "pages": {
        "BACKEND": "django_prometheus.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": os.environ.get("DP_MEMCACHED_LOCATION", "127.0.0.1:21211"),
        "KEY_PREFIX": _PREFIX,
    },
    "fragments": {
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("DP_REDIS_URL", "redis://127.0.0.1:16379"),
        "KEY_PREFIX": _PREFIX + "-dr",
    },
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
