"""Settings for serving the per-request DB project with uvicorn: ``DP_DB_FILE`` is its SQLite file."""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.db_request_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_prometheus", "tests.testapp"]
MIDDLEWARE = ["tests.db_request_project.middleware.AccountDBQueries"]
DATABASES = {
    "default": {
        "ENGINE": os.environ.get("DP_DB_ENGINE", "django_prometheus.db.backends.sqlite3"),
        "NAME": os.environ["DP_DB_FILE"],
    }
}
PROMETHEUS_INSTRUMENT_DATABASES = os.environ.get("DP_DB_NOSWAP") == "1"
PROMETHEUS_REQUEST_DB_METRICS = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
