"""The opt-in HTTP features (issue 13): what each adds to one request, on top of the default path.

Same project, request and handlers as ``bench_http`` (Django's default
middleware stack, a trivial view, a fresh WSGI environ or an ASGI call), with
the features' settings on. ``bare`` ignores them (no django_prometheus);
``upstream`` (django-prometheus 2.5.0) has none of them, so its row is its
default path. Compare each case's ``added instr`` with ``http_wsgi``'s.

- ``http_features_wsgi_routes``: ``PROMETHEUS_ROUTE_METRICS`` alone;
- ``http_features_wsgi_<feature>`` (grouped, inflight, queue, paths, views,
  exemplars, server_timing): that feature alone (with the queue header), for a
  per-feature profile; ``server_timing`` is ``PROMETHEUS_SERVER_TIMING`` for a
  loopback client (the header is written on every request);
- ``http_features_wsgi_all`` / ``http_features_asgi_all``: route metrics with
  grouped status codes, in-flight, queue time (the request carries
  ``X-Request-Start``), a path exclusion and a view exclusion that both miss
  (so the request is recorded, and the counts are deferred to the response),
  and exemplars (OpenTelemetry is installed, no span is current: what every
  request outside a trace pays).

Fixed loop counts, as ``bench_http``'s cases: the instruction count is the
slope over them.
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
    "PROMETHEUS_EXEMPLARS": True,
}


#: One feature at a time (``http_features_wsgi_<name>``): what each adds, for the profile.
ONE = {
    "routes": {"PROMETHEUS_ROUTE_METRICS": True},
    "grouped": {"PROMETHEUS_ROUTE_METRICS": True, "PROMETHEUS_GROUP_STATUS_CODES": True},
    "inflight": {"PROMETHEUS_INFLIGHT_METRICS": True},
    "queue": {"PROMETHEUS_QUEUE_TIME_METRICS": True},
    "paths": {"PROMETHEUS_EXCLUDE_PATHS": [r"^/metrics$"]},
    "views": {"PROMETHEUS_EXCLUDE_VIEWS": ["prometheus-django-metrics"]},
    "exemplars": {"PROMETHEUS_EXEMPLARS": True},
    # issue 27: the header for a loopback client (allowed by default), app entry only.
    "server_timing": {"PROMETHEUS_SERVER_TIMING": True},
}


def _routes(impl: str) -> dict[str, Any]:
    return {**bench_http._settings(impl), "PROMETHEUS_ROUTE_METRICS": True}


def _all(impl: str) -> dict[str, Any]:
    return {**bench_http._settings(impl), **ALL}


def _queue_stamp() -> str:
    # A proxy's stamp a few milliseconds ago (always within the hour the features accept).
    return f"t={time.time() - 0.005:.3f}"


def _queue_header() -> dict[str, str]:
    return {"HTTP_X_REQUEST_START": _queue_stamp()}


def _build_routes(impl: str) -> Op:
    return bench_http._wsgi_op({})


def _build_all(impl: str) -> Op:
    return bench_http._wsgi_op(_queue_header())


def _build_asgi_all(impl: str) -> Op:
    # bench_http's ASGI request, with the proxy's X-Request-Start header in its scope.
    import asyncio

    from django.core.handlers.asgi import ASGIHandler

    handler = ASGIHandler()
    loop = asyncio.new_event_loop()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/async",
        "raw_path": b"/async",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"x-request-start", _queue_stamp().encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    body = {"type": "http.request", "body": b"", "more_body": False}
    statuses: list[int] = []

    async def request() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return body
            await loop.create_future()  # after the body a client waits; Django cancels this
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await handler(dict(scope), receive, send)

    def op() -> None:
        loop.run_until_complete(request())

    op()
    if statuses != [200]:
        raise RuntimeError(f"the ASGI benchmark request answered {statuses}")
    statuses.clear()
    return op


WSGI_COUNTS = bench_http.WSGI_COUNTS
ASGI_COUNTS = (15, 30, 45)
HTTP_FEATURES_WSGI_ROUTES = Case(
    "http_features_wsgi_routes", _routes, _build_routes, warmup=500, counts=WSGI_COUNTS
)
HTTP_FEATURES_WSGI_ALL = Case("http_features_wsgi_all", _all, _build_all, warmup=500, counts=WSGI_COUNTS)
HTTP_FEATURES_ASGI_ALL = Case("http_features_asgi_all", _all, _build_asgi_all, warmup=200, counts=ASGI_COUNTS)


def _one(name: str) -> Case:
    def settings(impl: str) -> dict[str, Any]:
        return {**bench_http._settings(impl), **ONE[name]}

    return Case(f"http_features_wsgi_{name}", settings, _build_all, warmup=500, counts=WSGI_COUNTS)


# (routes alone keeps its own case above, without the queue header.)
ONE_CASES = [_one(name) for name in ONE if name != "routes"]
CASES = [HTTP_FEATURES_WSGI_ROUTES, HTTP_FEATURES_WSGI_ALL, HTTP_FEATURES_ASGI_ALL, *ONE_CASES]


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
