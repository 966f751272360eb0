"""Settings for the multiprocess server tests; the test passes paths and ports in MP_* variables."""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.mp_project.urls"
INSTALLED_APPS = ["django_prometheus", "tests.mp_project"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {
    "default": {
        "ENGINE": "django_prometheus.db.backends.sqlite3",
        "NAME": os.environ["MP_DB"],
        "OPTIONS": {"timeout": 30},
        "CONN_MAX_AGE": 0,  # one new connection per request that queries: an exact count
    }
}
CACHES = {
    "default": {
        "BACKEND": "django_prometheus.cache.backends.redis.NativeRedisCache",
        # A database of its own: other tests' cache.clear() (FLUSHDB) must not empty ours mid-run.
        "LOCATION": os.environ.get("DP_REDIS_URL", "redis://127.0.0.1:16379").rstrip("/") + "/7",
        "KEY_PREFIX": os.environ.get("MP_CACHE_PREFIX", "mp"),
    }
}
PROMETHEUS_EXPORT_MIGRATIONS = os.environ.get("MP_EXPORT_MIGRATIONS") == "1"
if os.environ.get("MP_INFLIGHT") == "1":
    PROMETHEUS_INFLIGHT_METRICS = True
    PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$"]  # a scrape is not one of the requests in flight
if os.environ.get("MP_PORT_RANGE"):
    _lo, _hi = map(int, os.environ["MP_PORT_RANGE"].split("-"))
    PROMETHEUS_METRICS_EXPORT_PORT_RANGE = range(_lo, _hi + 1)
    PROMETHEUS_METRICS_EXPORT_ADDRESS = "127.0.0.1"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
if os.environ.get("MP_NATIVE") == "1":
    PROMETHEUS_NATIVE_HISTOGRAMS = True
