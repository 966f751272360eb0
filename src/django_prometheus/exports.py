"""Ways to expose the metrics: a Django view, a port of their own, or one port per process of a range."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import prometheus_client
from django.http import HttpRequest, HttpResponse

from django_prometheus import access, migrations, negotiation, protobuf
from django_prometheus.conf import multiprocess_dir
from django_prometheus.text_format import ESCAPING_SUPPORTED, render


def _multiproc_dir() -> str | None:
    return multiprocess_dir()


def _aggregate_or_own() -> Any:
    """What the view and a single port serve: every process' metrics in multiprocess mode, else this one's."""
    path = _multiproc_dir()
    if not path:
        return prometheus_client.REGISTRY
    from django_prometheus.multiprocess import aggregate_registry  # fcntl: only where it is used

    return aggregate_registry(path)


# Before prometheus_client 0.22 its writers cannot escape with dots (names are legacy then,
# the same bytes under the other schemes).
_SCHEMES = (
    negotiation.SCHEMES
    if ESCAPING_SUPPORTED
    else frozenset({negotiation.UNDERSCORES, negotiation.ALLOW_UTF8, negotiation.VALUES})
)


def _scrape_answer(
    registry: Any, accept: str | None, accept_encoding: str | None, names: list[str]
) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers of a scrape, negotiated from the scraper's two headers."""
    chosen = negotiation.choose(accept, protobuf=True, schemes=_SCHEMES)
    if chosen.kind == negotiation.PROTOBUF:
        body, headers = protobuf.render(registry, names or None), [("Content-Type", protobuf.CONTENT_TYPE)]
    else:
        body = render(registry, chosen.openmetrics, names or None, chosen.escaping)
        headers = [("Content-Type", chosen.content_type)]
    if negotiation.gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return body, headers


def ExportToDjangoView(request: HttpRequest) -> HttpResponse:
    """The metrics, in the format and encoding the scraper asked for.

    The format ``Accept`` ranks highest of those we write (``negotiation``:
    the text format 0.0.4 by default and for any header we cannot parse),
    gzip when ``Accept-Encoding`` allows it, only the
    families named by ``?name[]=…`` when given, and the aggregate of every
    process in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``). When access
    rules are set (``django_prometheus.access``), 401/403 and no metric bytes
    for a request that fails them.
    """
    denied = access.check(
        request.META.get("REMOTE_ADDR"),
        request.META.get("HTTP_X_FORWARDED_FOR"),
        request.META.get("HTTP_AUTHORIZATION"),
    )
    if denied is not None:
        response = HttpResponse(denied.body, status=denied.status)
        for name, value in denied.headers:
            response[name] = value
        return response
    body, headers = _scrape_answer(
        _aggregate_or_own(),
        request.META.get("HTTP_ACCEPT"),
        request.META.get("HTTP_ACCEPT_ENCODING"),
        request.GET.getlist("name[]"),
    )
    response = HttpResponse(body)
    for name, value in headers:
        response[name] = value
    response["Vary"] = "Accept, Accept-Encoding"
    return response


# What django.contrib.auth.decorators.login_not_required does (Django 5.1+): a scraper
# has no session, so LoginRequiredMiddleware must not redirect it to a login page.
ExportToDjangoView.login_required = False  # type: ignore[attr-defined]


# --- The port exporters: /metrics on a port of its own, in a daemon thread ---

logger = logging.getLogger(__name__)

AUTORELOADER_MESSAGE = (
    "django_prometheus: the port exporter does not start under Django's autoreloader (runserver without "
    "--noreload): the reloader's parent process never serves a request, so its port would show numbers "
    "frozen at start-up, and the child that serves them is restarted on every change. "
    "Serve metrics with the view instead (path('', include('django_prometheus.urls')) gives /metrics), "
    "or run the server with --noreload."
)


def _own() -> Any:
    """A port of a range: this process' metrics only, as upstream (Prometheus sums the ports)."""
    return prometheus_client.REGISTRY


class _MetricsHandler(BaseHTTPRequestHandler):
    """prometheus_client's MetricsHandler's paths and methods, with our negotiation and time limits.

    GET on any path serves the metrics (``/favicon.ico`` an empty body), as
    prometheus_client's handler does; one request per connection (HTTP/1.0).
    """

    server: _MetricsHTTPServer
    #: Seconds a connection may wait for each read and for the whole response write.
    timeout = 10

    def do_GET(self) -> None:
        self.server.serving(self.request)
        if any("\n" in value or "\r" in value for value in self.headers.values()):
            # An obsolete line folding (RFC 9112 §5.2): refused, as gunicorn refuses it, rather
            # than read differently from the server in front of the view.
            self._send(400, [("Content-Type", "text/plain; charset=utf-8")], b"Bad Request\n")
            return
        try:
            denied = access.check(
                self.client_address[0],
                access.joined(self.headers.get_all("X-Forwarded-For")),
                access.joined(self.headers.get_all("Authorization")),
            )
        except Exception:  # a setting we cannot understand: closed, and said once per scrape
            logger.exception("django_prometheus: cannot check who may read the metrics")
            self._send(500, [], b"")
            return
        if denied is not None:
            self._send(denied.status, denied.headers, denied.body)
            return
        url = urlparse(self.path)
        if url.path == "/favicon.ico":
            self._send(200, [], b"")
            return
        try:
            migrations.export_pending()  # PROMETHEUS_EXPORT_MIGRATIONS: a first scrape reads them
        except Exception:
            logger.warning("django_prometheus: cannot export the migration gauges", exc_info=True)
        try:
            body, headers = _scrape_answer(
                self.server.registry(),
                self.headers.get("Accept"),
                self.headers.get("Accept-Encoding"),
                parse_qs(url.query).get("name[]", []),
            )
        except Exception:
            logger.exception("django_prometheus: cannot render the metrics for %s", self.client_address[0])
            self._send(500, [], b"")
            return
        self._send(200, headers, body)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


class _MetricsHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them.

    When every slot is taken, the connection that has waited longest without
    sending a complete request is dropped to make room, so idle or dripping
    clients cannot lock scrapes out; when every slot is writing a response, the
    new connection is closed at once.
    """

    daemon_threads = True
    request_queue_size = 64
    max_connections = 16

    def __init__(self, server_address: Any, registry: Callable[[], Any]) -> None:
        super().__init__(server_address, _MetricsHandler)
        self.registry = registry
        self._lock = threading.Lock()
        self._slots: set[Any] = set()  # connections holding a slot
        self._waiting: dict[Any, float] = {}  # those yet to send a complete request, since when

    def server_bind(self) -> None:
        # HTTPServer.server_bind() would also look up the host's FQDN, which can hang on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._slots) >= self.max_connections:
                if not self._waiting:
                    self.shutdown_request(request)
                    return
                oldest = min(self._waiting, key=self._waiting.__getitem__)
                del self._waiting[oldest]
                self._slots.discard(oldest)
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
                except OSError:
                    pass
            self._slots.add(request)
            self._waiting[request] = time.monotonic()
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give the slot back
            self._release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def serving(self, request: Any) -> None:
        """``request`` has sent a complete request: no longer a candidate for eviction."""
        with self._lock:
            self._waiting.pop(request, None)

    def _release(self, request: Any) -> None:
        with self._lock:
            self._waiting.pop(request, None)
            self._slots.discard(request)

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


def _under_autoreloader() -> bool:
    """True in both processes of ``runserver`` with its autoreloader.

    The child (``RUN_MAIN=true``) serves requests but is restarted on every
    change; the parent only watches it and never serves a request, so a port
    there would answer with numbers frozen at start-up. Django decides to use
    the reloader with this same test of ``sys.argv`` (``ManagementUtility.execute``).
    """
    if os.environ.get("RUN_MAIN") == "true":
        return True
    return sys.argv[1:2] == ["runserver"] and "--noreload" not in sys.argv


def _refuse_under_autoreloader() -> None:
    if _under_autoreloader():
        raise RuntimeError(AUTORELOADER_MESSAGE)


def _bind(port: int, addr: str, registry: Callable[[], Any]) -> _MetricsHTTPServer:
    """An HTTP server listening on (addr, port), serving ``registry()``; raises OSError if it cannot."""
    server_class = _MetricsHTTPServer6 if ":" in addr else _MetricsHTTPServer  # an IPv6 literal: "::", "::1"
    return server_class((addr, int(port)), registry)


def _start(httpd: _MetricsHTTPServer) -> PrometheusEndpointServer:
    thread = PrometheusEndpointServer(httpd)
    thread.start()
    _servers.append(thread)
    return thread


def SetupPrometheusEndpointOnPort(port: int, addr: str = "") -> PrometheusEndpointServer | None:
    """Serve /metrics on ``addr:port`` from a daemon thread, independently of Django's own server.

    In multiprocess mode the port serves the aggregate of every process.

    Returns the server thread, or None (with an error logged) when the port
    cannot be bound, e.g. because it is in use. Refuses (RuntimeError) under
    Django's autoreloader.
    """
    _refuse_under_autoreloader()
    try:
        httpd = _bind(port, addr, _aggregate_or_own)
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
    port and serves its own process' values, as upstream, also in multiprocess
    mode (a Prometheus scraping every port sums them; the aggregate is what the
    single port and the view serve).
    """
    _refuse_under_autoreloader()
    tried = []
    for port in port_range:
        try:
            httpd = _bind(port, addr, _own)
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
    from django_prometheus import conf

    port = conf.get("PROMETHEUS_METRICS_EXPORT_PORT")
    port_range = conf.get("PROMETHEUS_METRICS_EXPORT_PORT_RANGE")
    addr = conf.get("PROMETHEUS_METRICS_EXPORT_ADDRESS")
    if not port_range and not port:
        return
    try:
        if port_range:
            SetupPrometheusEndpointOnPortRange(port_range, addr)
        else:
            SetupPrometheusEndpointOnPort(port, addr)
    except RuntimeError as exc:
        logger.error("%s", exc)
