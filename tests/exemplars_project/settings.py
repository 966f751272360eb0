"""tests/http_project with PROMETHEUS_EXEMPLARS on and a real OpenTelemetry SDK tracer in front."""

import os

from tests.http_project.settings import *  # noqa: F403
from tests.http_project.settings import MIDDLEWARE

ROOT_URLCONF = "tests.http_project.urls"
PROMETHEUS_EXEMPLARS = True
# Outermost, so the span is current while both Prometheus middlewares observe.
MIDDLEWARE = ["tests.exemplars_project.tracing.TracingMiddleware", *MIDDLEWARE]
if os.environ.get("EXEMPLARS_PORT"):
    PROMETHEUS_METRICS_EXPORT_PORT = int(os.environ["EXEMPLARS_PORT"])
    PROMETHEUS_METRICS_EXPORT_ADDRESS = "127.0.0.1"
