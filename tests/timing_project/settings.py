"""Settings for the Server-Timing project (gunicorn, uvicorn, Chromium): DB and cache accounting on.

``DP_DB_FILE`` is its SQLite file (a fresh one per server).
"""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.timing_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django_prometheus.db.backends.sqlite3",
        "NAME": os.environ.get("DP_DB_FILE", ":memory:"),
    }
}
CACHES = {"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache", "LOCATION": "timing"}}
PROMETHEUS_SERVER_TIMING = True
if os.environ.get("DP_TIMING_ALLOWED"):
    PROMETHEUS_SERVER_TIMING_ALLOWED_IPS = [os.environ["DP_TIMING_ALLOWED"]]
# DP_TIMING_APP_ONLY=1: the app entry alone (written by the Before recorder in the core).
PROMETHEUS_REQUEST_DB_METRICS = os.environ.get("DP_TIMING_APP_ONLY") != "1"
PROMETHEUS_CACHE_OPERATION_METRICS = os.environ.get("DP_TIMING_APP_ONLY") != "1"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
