"""The allow-list behind real reverse proxies: HAProxy ``option forwardfor`` and nginx, view and port.

Each proxy (Debian's haproxy and nginx-light, installed by ``scripts/services.sh
install``) forwards to the view under gunicorn and to a port exporter, from
its own loopback address 127.0.0.2, the only trusted proxy. Clients connect
from 127.0.0.3 (not allowed) and 127.0.0.5 (allowed), sending whatever
``X-Forwarded-For`` lines they like. HAProxy adds its own line after the
client's (the set-up the port exporter was bypassed in); nginx's
``$proxy_add_x_forwarded_for`` appends to the client's value on one line,
``$remote_addr`` replaces it. Whatever a client sends, the hop the proxy
wrote decides, alike on the view and the port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_exports_servers import assert_no_metric_bytes, free_ports, gunicorn, needs_gunicorn, serve

PROXY = "127.0.0.2"
DENIED, ALLOWED = "127.0.0.3", "127.0.0.5"
RULES = {
    "PROMETHEUS_METRICS_ALLOWED_IPS": ["10.0.0.0/8", ALLOWED],
    "PROMETHEUS_METRICS_TRUSTED_PROXIES": [PROXY],
}
METRIC = b"django_http_requests_before_middlewares_total"

HAPROXY = shutil.which("haproxy", path="/usr/sbin:/usr/bin")
NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="no haproxy (scripts/services.sh install)")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="no nginx (scripts/services.sh install)")

# (client address, X-Forwarded-For lines the client sends, status)
CASES = [
    (DENIED, [], 403),
    (DENIED, ["10.1.2.3"], 403),  # the bypass: the client's own line, the proxy's after it
    (DENIED, ["10.1.2.3", "10.9.9.9"], 403),
    (DENIED, ["10.1.2.3, 127.0.0.2"], 403),  # claiming to come through the trusted proxy
    (DENIED, [ALLOWED], 403),
    (ALLOWED, [], 200),
    (ALLOWED, ["192.0.2.1"], 200),  # anything on the left is the client's claim, never read
    (ALLOWED, ["garbage", "192.0.2.1"], 200),
]


def get_from(source: str, port: int, forwarded: list[str]) -> tuple[int, bytes]:
    """(status, body) of ``GET /metrics`` from ``source`` with these X-Forwarded-For lines."""
    lines = "".join(f"X-Forwarded-For: {value}\r\n" for value in forwarded)
    request = f"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{lines}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def wait_for(port: int, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            pytest.fail(f"the proxy exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the proxy does not listen on {port}:\n{log.read_text(errors='replace')}")


@contextmanager
def run(args: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(port, proc, log)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


@contextmanager
def haproxy(tmp_path: Path, routes: dict[int, int]) -> Iterator[None]:
    """HAProxy with ``option forwardfor``: each listening port -> its backend port, from 127.0.0.2."""
    conf = [
        "global", "  maxconn 64",
        "defaults", "  mode http", "  option forwardfor",
        "  timeout connect 5s", "  timeout client 30s", "  timeout server 30s",
    ]  # fmt: skip
    for listen, backend in routes.items():
        conf += [f"listen p{listen}", f"  bind 127.0.0.1:{listen}"]
        conf += [f"  server s 127.0.0.1:{backend} source {PROXY}"]
    path = tmp_path / "haproxy.cfg"
    path.write_text("\n".join(conf) + "\n")
    with run([HAPROXY, "-db", "-f", str(path)], next(iter(routes)), tmp_path / "haproxy.log"):
        yield


@contextmanager
def nginx(tmp_path: Path, routes: dict[int, int], forwarded_for: str) -> Iterator[None]:
    """nginx setting ``X-Forwarded-For`` to ``forwarded_for``: each port -> its backend, from 127.0.0.2."""
    prefix = tmp_path / f"nginx-{len(list(tmp_path.iterdir()))}"
    prefix.mkdir()
    servers = "".join(
        f"""
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_bind {PROXY};
            proxy_set_header X-Forwarded-For {forwarded_for};
        }}
    }}"""
        for listen, backend in routes.items()
    )
    (prefix / "nginx.conf").write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{servers}
}}
"""
    )
    args = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    with run(args, next(iter(routes)), prefix / "out.log"):
        yield


def assert_through(view: int, port: int) -> None:
    """The same answers through the proxy to the view and to the port exporter."""
    for client, forwarded, expected in CASES:
        for target in (view, port):
            status, body = get_from(client, target, forwarded)
            assert status == expected, (client, forwarded, target == port, status, body[:200])
            if status == 200:
                assert METRIC in body
            else:
                assert_no_metric_bytes(status, expected, body)


@contextmanager
def app_and_port(tmp_path: Path) -> Iterator[list[int]]:
    """gunicorn with a port exporter: (app, export, and two ports for a proxy), the export port ours.

    A free port can be taken by another process on the host between the check and the
    bind (the worker then logs that it cannot export, and something else answers there):
    such a start is retried on other ports.
    """
    for _attempt in range(5):
        ports = free_ports(4)
        env = {"EXPORTS_SETTINGS": json.dumps(RULES), "EXPORTS_PORT": str(ports[1])}
        with serve(gunicorn(ports[0]), ports[:2], tmp_path, **env) as server:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if "cannot export metrics" in server.log.read_text(errors="replace"):
                    break  # another process has the port: try others
                if worker_listens(server.pid, ports[1]):
                    yield ports
                    return
                time.sleep(0.1)
    pytest.fail("no free ports for gunicorn and its port exporter")  # pragma: no cover


def worker_listens(master: int, port: int) -> bool:
    """True when a worker of the gunicorn ``master`` holds the socket listening on ``port``."""
    try:
        workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        sockets = set()
        for pid in workers:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    sockets.add(target[8:-1])
    except OSError:  # a worker not there yet, or gone
        return False
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in sockets:
            return True
    return False


@needs_gunicorn
@needs_haproxy
def test_haproxy_option_forwardfor(tmp_path):
    with app_and_port(tmp_path) as (app, export, view_proxy, port_proxy):
        with haproxy(tmp_path, {view_proxy: app, port_proxy: export}):
            assert_through(view_proxy, port_proxy)
        # Straight to the view, not through the proxy: X-Forwarded-For is the client's claim.
        status, body = get_from(DENIED, app, ["10.1.2.3"])
        assert_no_metric_bytes(status, 403, body)


@needs_gunicorn
@needs_nginx
@pytest.mark.parametrize("forwarded_for", ["$proxy_add_x_forwarded_for", "$remote_addr"])
def test_nginx(tmp_path, forwarded_for):
    with app_and_port(tmp_path) as (app, export, view_proxy, port_proxy):
        with nginx(tmp_path, {view_proxy: app, port_proxy: export}, forwarded_for):
            assert_through(view_proxy, port_proxy)
