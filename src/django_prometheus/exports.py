"""Ways to expose the metrics: a Django view (and, later, a port of their own)."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from typing import Any

import prometheus_client
from django.http import HttpRequest, HttpResponse
from prometheus_client import multiprocess
from prometheus_client.exposition import MetricsHandler, choose_encoder, gzip_accepted

from django_prometheus.conf import multiprocess_dir


def _multiproc_dir() -> str | None:
    return multiprocess_dir()


def ExportToDjangoView(request: HttpRequest) -> HttpResponse:
    """The metrics, negotiated as prometheus_client's own handlers do.

    OpenMetrics when the scraper's ``Accept`` asks for it (else the text
    format), gzip when ``Accept-Encoding`` allows it, only the families named
    by ``?name[]=…`` when given, and the aggregate of every process in
    multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).
    """
    path = _multiproc_dir()
    if path:
        registry: Any = prometheus_client.CollectorRegistry()
        # An explicit path: the lower-case variable needs no deprecated fallback in prometheus_client.
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry = prometheus_client.REGISTRY
    names = request.GET.getlist("name[]")
    if names:
        registry = registry.restricted_registry(names)
    encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    output = encoder(registry)
    response = HttpResponse(content_type=content_type)
    if gzip_accepted(request.META.get("HTTP_ACCEPT_ENCODING", "")):
        output = gzip.compress(output)
        response["Content-Encoding"] = "gzip"
    response.content = output
    response["Vary"] = "Accept, Accept-Encoding"
    return response


# --- The port exporters: /metrics on a port of its own, in a daemon thread ---

logger = logging.getLogger(__name__)

AUTORELOADER_MESSAGE = (
    "django_prometheus: the port exporter does not start under Django's autoreloader (RUN_MAIN=true): "
    "the reloader runs your code in two processes and restarts one, so the port would be taken twice. "
    "Serve metrics with the view instead (path('', include('django_prometheus.urls')) gives /metrics), "
    "or run the server with --noreload."
)


def _exporter_registry() -> prometheus_client.CollectorRegistry:
    """What a port exporter serves: every process' metrics in multiprocess mode, else this one's."""
    if _multiproc_dir():
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


class _QuietMetricsHandler(MetricsHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


class _MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind() would also look up the host's FQDN, which can hang on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("django_prometheus: error while serving metrics to %s", client_address, exc_info=True)


class _MetricsHTTPServer6(_MetricsHTTPServer):
    address_family = socket.AF_INET6


class PrometheusEndpointServer(threading.Thread):
    """A daemon thread that serves ``httpd`` until the process exits (or ``httpd.shutdown()``)."""

    def __init__(self, httpd: Any, *args: Any, **kwargs: Any) -> None:
        self.httpd = httpd
        kwargs.setdefault("daemon", True)
        kwargs.setdefault("name", "django-prometheus-exporter")
        super().__init__(*args, **kwargs)

    def run(self) -> None:
        self.httpd.serve_forever()


#: The exporters this process started, in order.
_servers: list[PrometheusEndpointServer] = []


def _refuse_under_autoreloader() -> None:
    if os.environ.get("RUN_MAIN") == "true":
        raise RuntimeError(AUTORELOADER_MESSAGE)


def _bind(port: int, addr: str) -> _MetricsHTTPServer:
    """An HTTP server listening on (addr, port); raises OSError if it cannot."""
    server_class = _MetricsHTTPServer6 if ":" in addr else _MetricsHTTPServer  # an IPv6 literal: "::", "::1"
    return server_class((addr, int(port)), _QuietMetricsHandler.factory(_exporter_registry()))


def _start(httpd: _MetricsHTTPServer) -> PrometheusEndpointServer:
    thread = PrometheusEndpointServer(httpd)
    thread.start()
    _servers.append(thread)
    return thread


def SetupPrometheusEndpointOnPort(port: int, addr: str = "") -> PrometheusEndpointServer | None:
    """Serve /metrics on ``addr:port`` from a daemon thread, independently of Django's own server.

    Returns the server thread, or None (with an error logged) when the port
    cannot be bound, e.g. because it is in use. Refuses (RuntimeError) under
    Django's autoreloader.
    """
    _refuse_under_autoreloader()
    try:
        httpd = _bind(port, addr)
    except OSError as exc:
        logger.error(
            "django_prometheus: cannot export metrics on %s:%s (%s); is the port already in use? "
            "Metrics are not served on a port by this process.", addr or "*", port, exc,
        )  # fmt: skip
        return None
    return _start(httpd)


def SetupPrometheusEndpointOnPortRange(port_range: Iterable[int], addr: str = "") -> int | None:
    """Serve /metrics on the first port of ``port_range`` that can be bound; return it, or None.

    Meant for several worker processes on one host: each takes the next free
    port. In multiprocess mode every one of them serves the aggregate of all.
    """
    _refuse_under_autoreloader()
    tried = []
    for port in port_range:
        try:
            httpd = _bind(port, addr)
        except OSError:
            tried.append(port)
            continue
        _start(httpd)
        return int(port)
    logger.error(
        "django_prometheus: no free port to export metrics on %s (tried %s); "
        "metrics are not served on a port by this process.", addr or "*", _describe(tried),
    )  # fmt: skip
    return None


def _describe(ports: list[int]) -> str:
    if not ports:
        return "an empty range"
    if len(ports) > 3:
        return f"{ports[0]}..{ports[-1]}, {len(ports)} ports"
    return ", ".join(map(str, ports))


def SetupPrometheusExportsFromConfig() -> None:
    """Start the port exporter the settings ask for (PORT_RANGE wins over PORT); called by ready().

    Never raises: under the autoreloader, or when no port can be bound, it logs
    an error and Django goes on without a port exporter.
    """
    from django.conf import settings

    port = getattr(settings, "PROMETHEUS_METRICS_EXPORT_PORT", None)
    port_range = getattr(settings, "PROMETHEUS_METRICS_EXPORT_PORT_RANGE", None)
    addr = getattr(settings, "PROMETHEUS_METRICS_EXPORT_ADDRESS", "")
    if not port_range and not port:
        return
    try:
        if port_range:
            SetupPrometheusEndpointOnPortRange(port_range, addr)
        else:
            SetupPrometheusEndpointOnPort(port, addr)
    except RuntimeError as exc:
        logger.error("%s", exc)
