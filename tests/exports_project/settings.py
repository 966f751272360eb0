"""tests/http_project, plus what the exporter tests set through EXPORTS_* variables (ports, access rules)."""

import json
import os

from tests.http_project.settings import *  # noqa: F403

if os.environ.get("EXPORTS_PORT"):
    PROMETHEUS_METRICS_EXPORT_PORT = int(os.environ["EXPORTS_PORT"])
if os.environ.get("EXPORTS_PORT_RANGE"):
    _lo, _hi = map(int, os.environ["EXPORTS_PORT_RANGE"].split("-"))
    PROMETHEUS_METRICS_EXPORT_PORT_RANGE = range(_lo, _hi + 1)
PROMETHEUS_METRICS_EXPORT_ADDRESS = "127.0.0.1"
# {"PROMETHEUS_METRICS_BEARER_TOKENS": [...], ...}: the access rules under test.
globals().update(json.loads(os.environ.get("EXPORTS_SETTINGS", "{}")))

if os.environ.get("EXPORTS_UTF8_METRIC"):
    # A user's metric with a UTF-8 name (prometheus_client 0.22+): the negotiation tests' escaping.
    import prometheus_client

    prometheus_client.Counter("exports.utf8.requests", "A UTF-8 name.", ["http.method"]).labels("GET").inc()
