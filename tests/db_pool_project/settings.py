"""Pooled PostgreSQL aliases served by gunicorn workers in multiprocess mode (tests/test_db_pool_servers.py).

``pooled`` uses our ENGINE, ``pooled_bare`` Django's own with
``PROMETHEUS_INSTRUMENT_DATABASES``: the two paths side by side. The test
passes the pool timeout, a tag for the connections' application_name, and
the export port in POOL_* variables.
"""

import os

from tests.db_settings import PG

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.db_pool_project.urls"
INSTALLED_APPS = ["django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
_TAG = os.environ.get("POOL_TAG", "dp-pool")
_POOL = {"min_size": 1, "max_size": 2, "timeout": float(os.environ.get("POOL_TIMEOUT", "1.0"))}


def _alias(engine: str, name: str) -> dict:
    return {
        "ENGINE": engine,
        **PG,
        "OPTIONS": {"pool": _POOL, "application_name": f"{_TAG}-{name}"},
        "CONN_HEALTH_CHECKS": True,  # the pool checks each connection it hands out
    }


DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "pooled": _alias("django_prometheus.db.backends.postgresql", "pooled"),
    "pooled_bare": _alias("django.db.backends.postgresql", "pooled_bare"),
}
PROMETHEUS_INSTRUMENT_DATABASES = ["pooled_bare"]
if os.environ.get("POOL_EXPORT_PORT"):
    PROMETHEUS_METRICS_EXPORT_PORT = int(os.environ["POOL_EXPORT_PORT"])
    PROMETHEUS_METRICS_EXPORT_ADDRESS = "127.0.0.1"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
