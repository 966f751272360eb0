"""Demo settings: SQLite + LocMem by default; Redis and PostgreSQL by environment.

DEMO_CACHE=redis       cache on Redis (Django's own client, no django-redis needed):
                       DEMO_REDIS_URL (or DP_REDIS_URL), default redis://127.0.0.1:16379 (scripts/services.sh)
DEMO_DB=postgresql     database on PostgreSQL: DP_PG_HOST/DP_PG_PORT/DP_PG_USER/DP_PG_PASSWORD/
                       DP_PG_NAME, defaults 127.0.0.1/15432/dp/dp/dp (scripts/services.sh)
DEMO_SQLITE_PATH       the SQLite file (default: demo.sqlite3 in the temp directory)
DEMO_METRICS_TOKEN     /metrics requires `Authorization: Bearer <this>` (PROMETHEUS_METRICS_BEARER_TOKENS)

`make demo` installs what DEMO_CACHE/DEMO_DB need; run otherwise, a missing driver stops the
demo here with the line that installs it (not a 500 on every page).
"""

import importlib.util
import os
import tempfile

from django.core.exceptions import ImproperlyConfigured


def _require(module: str, package: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImproperlyConfigured(
            f"{why} needs the {package!r} package, which is not installed: "
            f"install it with `.venv/bin/python -m pip install '{package}'` "
            f"(or run `{why} make demo`, which does)"
        )


SECRET_KEY = "demo-only-not-secret"
DEBUG = os.environ.get("DEMO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "demo.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_prometheus",
    "shop",
]

# Before first, After last: everything in between is timed as "including middlewares".
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

DEMO_DB = os.environ.get("DEMO_DB", "sqlite")
DEMO_CACHE = os.environ.get("DEMO_CACHE", "locmem")
if DEMO_DB not in ("sqlite", "postgresql"):
    raise ImproperlyConfigured(f"DEMO_DB={DEMO_DB!r}: use sqlite (the default) or postgresql")
if DEMO_CACHE not in ("locmem", "redis"):
    raise ImproperlyConfigured(f"DEMO_CACHE={DEMO_CACHE!r}: use locmem (the default) or redis")

if DEMO_DB == "postgresql":
    _require("psycopg", "psycopg[binary]>=3.1", "DEMO_DB=postgresql")
    DATABASES = {
        "default": {
            "ENGINE": "django_prometheus.db.backends.postgresql",
            "HOST": os.environ.get("DP_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DP_PG_PORT", "15432"),
            "USER": os.environ.get("DP_PG_USER", "dp"),
            "PASSWORD": os.environ.get("DP_PG_PASSWORD", "dp"),
            "NAME": os.environ.get("DP_PG_NAME", "dp"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django_prometheus.db.backends.sqlite3",
            "NAME": os.environ.get("DEMO_SQLITE_PATH", os.path.join(tempfile.gettempdir(), "demo.sqlite3")),
        }
    }

if DEMO_CACHE == "redis":
    _require("redis", "redis>=4", "DEMO_CACHE=redis")
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.redis.NativeRedisCache",
            "LOCATION": os.environ.get("DEMO_REDIS_URL")
            or os.environ.get("DP_REDIS_URL", "redis://127.0.0.1:16379"),
            "KEY_PREFIX": "dp-demo",
        }
    }
else:
    CACHES = {
        "default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache", "LOCATION": "demo"}
    }

# The migration gauges (django_migrations_applied_total / _unapplied_total) on /metrics.
PROMETHEUS_EXPORT_MIGRATIONS = True

# The opt-in families the dashboard's route, database and cache panels read (README).
PROMETHEUS_ROUTE_METRICS = True
PROMETHEUS_INFLIGHT_METRICS = True
PROMETHEUS_QUEUE_TIME_METRICS = True
PROMETHEUS_REQUEST_DB_METRICS = True
PROMETHEUS_CACHE_OPERATION_METRICS = True
# Exemplars (trace ids on the latency histograms) when OpenTelemetry's SDK is there to make spans:
# shop.tracing starts one for requests with a `traceparent` (DEMO_TRAFFIC=1 sends one per round).
if importlib.util.find_spec("opentelemetry") and importlib.util.find_spec("opentelemetry.sdk"):
    PROMETHEUS_EXEMPLARS = True
    MIDDLEWARE.insert(0, "shop.tracing.TraceparentMiddleware")  # outermost: the span covers ours

# /metrics protection: open by default (the demo listens on 127.0.0.1 only), a token on demand.
if os.environ.get("DEMO_METRICS_TOKEN"):
    PROMETHEUS_METRICS_BEARER_TOKENS = [os.environ["DEMO_METRICS_TOKEN"]]

# Prometheus' own scrapes are not traffic.
PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # The demo provokes 500s on purpose: one line each, not a traceback per request.
    "loggers": {"django.request": {"handlers": ["console"], "level": "CRITICAL"}},
}
