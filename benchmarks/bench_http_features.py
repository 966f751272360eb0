"""The opt-in HTTP features (issue 13): what each adds to one request, on top of the default path.

Same project, request and handlers as ``bench_http`` (Django's default
middleware stack, a trivial view, a fresh WSGI environ or an ASGI call), with
the features' settings on. ``bare`` ignores them (no django_prometheus);
``upstream`` (django-prometheus 2.5.0) has none of them, so its row is its
default path. Compare each case's ``added instr`` with ``http_wsgi``'s.

- ``http_features_wsgi_routes``: ``PROMETHEUS_ROUTE_METRICS`` alone;
- ``http_features_wsgi_all`` / ``http_features_asgi_all``: route metrics with
  grouped status codes, in-flight, queue time (the request carries
  ``X-Request-Start``), a path exclusion and a view exclusion that both miss
  (so the request is recorded, and the counts are deferred to the response).
"""

from __future__ import annotations

import time
from typing import Any

from . import bench_http
from ._harness import Case, Op, prepare

ALL = {
    "PROMETHEUS_ROUTE_METRICS": True,
    "PROMETHEUS_GROUP_STATUS_CODES": True,
    "PROMETHEUS_INFLIGHT_METRICS": True,
    "PROMETHEUS_QUEUE_TIME_METRICS": True,
    "PROMETHEUS_EXCLUDE_PATHS": [r"^/metrics$"],
    "PROMETHEUS_EXCLUDE_VIEWS": ["prometheus-django-metrics"],
}


def _routes(impl: str) -> dict[str, Any]:
    return {**bench_http._settings(impl), "PROMETHEUS_ROUTE_METRICS": True}


def _all(impl: str) -> dict[str, Any]:
    return {**bench_http._settings(impl), **ALL}


def _queue_header() -> dict[str, str]:
    # A proxy's stamp a few milliseconds ago (always within the hour the features accept).
    return {"HTTP_X_REQUEST_START": f"t={time.time() - 0.005:.3f}"}


def _build_routes(impl: str) -> Op:
    return bench_http._wsgi_op({})


def _build_all(impl: str) -> Op:
    return bench_http._wsgi_op(_queue_header())


def _build_asgi_all(impl: str) -> Op:
    return bench_http._build_asgi(impl)


HTTP_FEATURES_WSGI_ROUTES = Case("http_features_wsgi_routes", _routes, _build_routes)
HTTP_FEATURES_WSGI_ALL = Case("http_features_wsgi_all", _all, _build_all)
HTTP_FEATURES_ASGI_ALL = Case("http_features_asgi_all", _all, _build_asgi_all)
CASES = [HTTP_FEATURES_WSGI_ROUTES, HTTP_FEATURES_WSGI_ALL, HTTP_FEATURES_ASGI_ALL]


class HttpRouteMetricsCost:
    """One request with route metrics on, per implementation (asv)."""

    params = bench_http.IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.routes = prepare(HTTP_FEATURES_WSGI_ROUTES, impl)

    def time_wsgi_routes(self, impl: str) -> None:
        self.routes()


class HttpAllFeaturesCost:
    """One request with every feature of issue 13 on, per implementation (asv; its own process)."""

    params = bench_http.IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.all = prepare(HTTP_FEATURES_WSGI_ALL, impl)
        self.asgi_all = prepare(HTTP_FEATURES_ASGI_ALL, impl)

    def time_wsgi_all(self, impl: str) -> None:
        self.all()

    def time_asgi_all(self, impl: str) -> None:
        self.asgi_all()
