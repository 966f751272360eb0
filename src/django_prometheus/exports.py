"""Ways to expose the metrics: a Django view (and, later, a port of their own)."""

from __future__ import annotations

import os

import prometheus_client
from django.http import HttpRequest, HttpResponse
from prometheus_client import multiprocess


def _multiproc_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def ExportToDjangoView(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format (aggregated across processes in multiprocess mode)."""
    if _multiproc_dir():
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return HttpResponse(prometheus_client.generate_latest(registry), content_type=prometheus_client.CONTENT_TYPE_LATEST)
