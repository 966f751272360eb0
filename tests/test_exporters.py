"""The port exporters: /metrics on a port of its own, over real loopback sockets."""

from __future__ import annotations

import logging
import socket
import urllib.error
import urllib.request

import pytest
from django.test import override_settings

from django_prometheus import exports
from django_prometheus.metrics import Counter

LOOPBACK = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """n consecutive free ports on loopback (checked once; nothing else here takes them)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        ok = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return list(range(base, base + n))
    raise RuntimeError("no free port range")  # pragma: no cover


@pytest.fixture
def occupy():
    socks = []

    def occupy(port: int) -> None:
        s = socket.socket()
        s.bind((LOOPBACK, port))
        s.listen()
        socks.append(s)

    yield occupy
    for s in socks:
        s.close()


@pytest.fixture(autouse=True)
def stop_servers(monkeypatch):
    monkeypatch.delenv("RUN_MAIN", raising=False)
    yield
    while exports._servers:
        server = exports._servers.pop()
        server.httpd.shutdown()
        server.httpd.server_close()
        server.join(5)


@pytest.fixture
def marker():
    c = Counter("django_exporter_test_marker", "A marker for the exporter tests.")
    c.inc(42)
    yield c
    from prometheus_client import REGISTRY

    REGISTRY.unregister(c)


def scrape(port: int, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def test_port_exporter_serves_the_registry(marker):
    (port,) = free_ports(1)
    server = exports.SetupPrometheusEndpointOnPort(port, LOOPBACK)
    assert isinstance(server, exports.PrometheusEndpointServer)
    assert server.daemon and server.is_alive()
    assert "django_exporter_test_marker_total 42.0" in scrape(port)


def test_port_in_use_logs_a_clear_error_and_does_not_raise(occupy, caplog):
    (port,) = free_ports(1)
    occupy(port)
    with caplog.at_level(logging.ERROR, logger="django_prometheus.exports"):
        assert exports.SetupPrometheusEndpointOnPort(port, LOOPBACK) is None
    assert f"cannot export metrics on {LOOPBACK}:{port}" in caplog.text
    assert "already in use" in caplog.text


def test_port_range_takes_the_first_free_port(occupy, marker):
    ports = free_ports(3)
    occupy(ports[0])
    assert exports.SetupPrometheusEndpointOnPortRange(ports, LOOPBACK) == ports[1]
    assert exports.SetupPrometheusEndpointOnPortRange(range(ports[0], ports[2] + 1), LOOPBACK) == ports[2]
    assert "django_exporter_test_marker_total 42.0" in scrape(ports[2])


def test_port_range_with_no_free_port_returns_none_and_logs(occupy, caplog):
    ports = free_ports(2)
    for p in ports:
        occupy(p)
    with caplog.at_level(logging.ERROR, logger="django_prometheus.exports"):
        assert exports.SetupPrometheusEndpointOnPortRange(ports, LOOPBACK) is None
    assert "no free port to export metrics" in caplog.text
    assert exports._servers == []


@pytest.mark.parametrize(
    "call",
    [
        lambda port: exports.SetupPrometheusEndpointOnPort(port, LOOPBACK),
        lambda port: exports.SetupPrometheusEndpointOnPortRange([port], LOOPBACK),
    ],
    ids=["port", "range"],
)
def test_refuses_under_the_autoreloader_and_says_what_to_do(monkeypatch, call):
    (port,) = free_ports(1)
    monkeypatch.setenv("RUN_MAIN", "true")
    with pytest.raises(RuntimeError, match="--noreload") as exc:
        call(port)
    assert "/metrics" in str(exc.value)
    assert exports._servers == []


def test_config_under_the_autoreloader_logs_instead_of_crashing(monkeypatch, caplog):
    (port,) = free_ports(1)
    monkeypatch.setenv("RUN_MAIN", "true")
    with override_settings(PROMETHEUS_METRICS_EXPORT_PORT=port, PROMETHEUS_METRICS_EXPORT_ADDRESS=LOOPBACK):
        with caplog.at_level(logging.ERROR, logger="django_prometheus.exports"):
            exports.SetupPrometheusExportsFromConfig()
    assert "autoreloader" in caplog.text
    assert exports._servers == []


def test_config_port_range_wins_over_port():
    port, *port_range = free_ports(3)
    with override_settings(
        PROMETHEUS_METRICS_EXPORT_PORT=port,
        PROMETHEUS_METRICS_EXPORT_PORT_RANGE=range(port_range[0], port_range[1] + 1),
        PROMETHEUS_METRICS_EXPORT_ADDRESS=LOOPBACK,
    ):
        exports.SetupPrometheusExportsFromConfig()
    assert [s.httpd.server_address for s in exports._servers] == [(LOOPBACK, port_range[0])]


def test_config_port_and_address():
    (port,) = free_ports(1)
    with override_settings(PROMETHEUS_METRICS_EXPORT_PORT=port, PROMETHEUS_METRICS_EXPORT_ADDRESS=LOOPBACK):
        exports.SetupPrometheusExportsFromConfig()
    assert [s.httpd.server_address for s in exports._servers] == [(LOOPBACK, port)]
    scrape(port)


def test_no_setting_starts_nothing():
    exports.SetupPrometheusExportsFromConfig()
    assert exports._servers == []


def test_ipv6_loopback_is_served_when_available():
    if not socket.has_ipv6:  # pragma: no cover - depends on the host
        pytest.skip("no IPv6 on this host")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:  # pragma: no cover - depends on the host
        pytest.skip("no IPv6 loopback on this host")
    server = exports.SetupPrometheusEndpointOnPort(port, "::1")
    assert server is not None
    with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as r:
        assert r.status == 200


def test_port_exporter_negotiates_as_the_view(marker):
    (port,) = free_ports(1)
    exports.SetupPrometheusEndpointOnPort(port, LOOPBACK)
    for accept in ['application/openmetrics-text; version="1.0.0"', "text/plain;version=abc", "a;b;c,,="]:
        text = scrape(port, {"Accept": accept})
        assert "django_exporter_test_marker_total 42.0" in text
        assert text.endswith("# EOF\n") is accept.startswith("application/openmetrics-text")
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}/", headers={"Accept-Encoding": "gzip;q=0"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert r.headers["Content-Encoding"] is None


def test_an_idle_connection_is_closed_after_the_read_timeout(monkeypatch, marker):
    monkeypatch.setattr(exports._MetricsHandler, "timeout", 0.3)
    (port,) = free_ports(1)
    exports.SetupPrometheusEndpointOnPort(port, LOOPBACK)
    with socket.create_connection((LOOPBACK, port), timeout=30) as idle:
        idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
        assert idle.recv(100) == b""  # the server hung up (before the 30 s of our own timeout)


def test_full_slots_drop_the_longest_idle_connection_not_the_scrape(monkeypatch, marker):
    monkeypatch.setattr(exports._MetricsHTTPServer, "max_connections", 3)
    (port,) = free_ports(1)
    server = exports.SetupPrometheusEndpointOnPort(port, LOOPBACK)
    idle = [socket.create_connection((LOOPBACK, port), timeout=30) for _ in range(3)]
    try:
        assert "django_exporter_test_marker_total 42.0" in scrape(port)
        assert idle[0].recv(100) == b""  # the oldest idle one made room
        assert len(server.httpd._slots) <= 3
    finally:
        for s in idle:
            s.close()


def test_access_settings_it_cannot_enforce_answer_500_without_metrics(marker):
    (port,) = free_ports(1)
    exports.SetupPrometheusEndpointOnPort(port, LOOPBACK)
    with override_settings(PROMETHEUS_METRICS_ALLOWED_IPS=["not-a-network"]):
        with pytest.raises(urllib.error.HTTPError) as exc:
            scrape(port)
    assert exc.value.code == 500
    assert exc.value.read() == b""
