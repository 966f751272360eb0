"""Settings for serving the features project with gunicorn or uvicorn: every opt-in HTTP feature on."""

from tests.http_project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.features_project.urls"
PROMETHEUS_ROUTE_METRICS = True
PROMETHEUS_INFLIGHT_METRICS = True
PROMETHEUS_QUEUE_TIME_METRICS = True
PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$"]
PROMETHEUS_EXCLUDE_VIEWS = ["by-name"]
