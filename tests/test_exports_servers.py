"""The view and the port exporters behind real servers over loopback: gunicorn, uvicorn, runserver.

Each test starts tests/exports_project (tests/http_project plus EXPORTS_* settings)
on 127.0.0.1 in a process group of its own and stops it at the end.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.servers import Samples, parse_samples, sample_value

# prometheus_client's choose_encoder's answers: text 0.0.4 unless OpenMetrics 1.0.0 is asked for.
CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BIN = os.path.dirname(sys.executable)

needs_gunicorn = pytest.mark.skipif(shutil.which("gunicorn", path=BIN) is None, reason="no gunicorn")
needs_uvicorn = pytest.mark.skipif(shutil.which("uvicorn", path=BIN) is None, reason="no uvicorn")


def free_ports(n: int) -> list[int]:
    """n consecutive free ports on loopback."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((HOST, 0))
            base = s.getsockname()[1]
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind((HOST, p))
        except OSError:
            continue
        return list(range(base, base + n))
    raise RuntimeError("no free ports")  # pragma: no cover


def listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def wait_listening(ports: list[int], proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(listening(p) for p in ports):
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{ports} not all listening:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


class Server(NamedTuple):
    pid: int
    log: Path


@contextmanager
def serve(args: list[str], wait_for: list[int], tmp_path: Path, **env_vars: str) -> Iterator[Server]:
    """Run ``python -m <args>`` until the block ends."""
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR" and k != "RUN_MAIN"}
    env.update(DJANGO_SETTINGS_MODULE="tests.exports_project.settings", PYTHONPATH=str(ROOT), **env_vars)
    log = tmp_path / f"server-{len(list(tmp_path.iterdir()))}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_listening(wait_for, proc, log)
        yield Server(proc.pid, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def gunicorn(port: int, workers: int = 1) -> list[str]:
    return ["gunicorn", "tests.exports_project.wsgi:application", "-b", f"{HOST}:{port}",
            "-w", str(workers), "--graceful-timeout", "5"]  # fmt: skip


def uvicorn(port: int) -> list[str]:
    return ["uvicorn", "tests.exports_project.asgi:application", "--host", HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning"]  # fmt: skip


def get(port: int, path: str = "/metrics", headers: dict[str, str] | None = None, timeout: float = 30):
    """(status, headers, body) of one GET on a new connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def samples(body: bytes) -> Samples:
    return parse_samples(body.decode())


OK_REQUESTS = "django_http_requests_total_by_view_transport_method_total"


def ok_count(body: bytes) -> float:
    return sample_value(samples(body), OK_REQUESTS, view="ok", transport="http", method="GET")


PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
# (headers, OpenMetrics expected, gzip expected): what a client may send, RFC 9110's forms included.
NEGOTIATION = [
    ({"Accept": 'application/openmetrics-text; version="1.0.0"'}, True, False),
    ({"Accept": "application/openmetrics-text; version=abc"}, False, False),
    ({"Accept": "text/plain;version=abc"}, False, False),
    ({"Accept": "application/openmetrics-text; version=999"}, False, False),
    ({"Accept": "application/openmetrics-text;q=0, text/plain;q=0.5"}, False, False),
    ({"Accept": "application/openmetrics-text;q=abc"}, False, False),
    ({"Accept": ';;=,",,application/openmetrics-text;;version='}, False, False),
    (
        {"Accept": PROMETHEUS_2_ACCEPT},
        True,
        False,
    ),  # fmt: skip
    ({"Accept-Encoding": "gzip;q=0"}, False, False),
    ({"Accept-Encoding": "gzip;q=0, *"}, False, False),
    ({"Accept-Encoding": "br, gzip;q=0.5"}, False, True),
    ({"Accept-Encoding": "gzip;q=x"}, False, False),
    ({"Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"}, True, True),
]


def assert_negotiated(port: int, path: str = "/metrics") -> None:
    for headers, openmetrics, gzipped in NEGOTIATION:
        status, response_headers, body = get(port, path, headers)
        assert status == 200, (headers, status, body[:300])
        assert (response_headers.get("content-encoding") == "gzip") is gzipped, (headers, response_headers)
        if gzipped:
            body = gzip.decompress(body)
        if openmetrics:
            assert response_headers["content-type"] == OPENMETRICS, headers
            assert body.endswith(b"# EOF\n"), headers
        else:
            assert response_headers["content-type"] == CONTENT_TYPE_LATEST, headers
            assert "999" not in response_headers["content-type"]
            assert ok_count(body) >= 0 and b"# EOF" not in body, headers


@needs_gunicorn
def test_gunicorn_view_and_port_survive_any_accept_header(tmp_path):
    port, export = free_ports(2)
    with serve(gunicorn(port), [port, export], tmp_path, EXPORTS_PORT=str(export)):
        get(port, "/ok")
        assert_negotiated(port)
        assert_negotiated(export)
        assert_negotiated(export, "/any/path?x=1")  # prometheus_client's handler serves every path
        status, _, body = get(export, "/favicon.ico")
        assert (status, body) == (200, b"")


@needs_uvicorn
def test_uvicorn_view_and_port_survive_any_accept_header(tmp_path):
    port, export = free_ports(2)
    with serve(uvicorn(port), [port, export], tmp_path, EXPORTS_PORT=str(export)):
        get(port, "/ok")
        assert_negotiated(port)
        assert_negotiated(export)


MAX_CONNECTIONS = 16  # the docs' figure (exporters page): connections a port exporter serves at once


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def still_open(s: socket.socket) -> bool:
    """The server has not closed ``s`` (nothing to read, no EOF)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


@needs_gunicorn
def test_idle_connections_cannot_exhaust_the_port_exporter(tmp_path):
    port, export = free_ports(2)
    with serve(gunicorn(port), [port, export], tmp_path, EXPORTS_PORT=str(export)) as server:
        worker = worker_pid(server.pid)
        before = thread_count(worker)
        idle = []
        try:
            for i in range(120):  # idle, and dripping a request that never ends
                s = socket.create_connection((HOST, export), timeout=10)
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                idle.append(s)
            # A scrape still gets through, at once: before the server's read timeout (10 s) has
            # closed any idle connection to free a slot (it evicts the oldest idle one instead).
            status, _, body = get(export)
            assert status == 200 and b"django_http_requests_before_middlewares_total" in body
            assert still_open(idle[-1])
            bound = before + MAX_CONNECTIONS + 1
            deadline = time.monotonic() + 10
            while thread_count(worker) > bound and time.monotonic() < deadline:
                time.sleep(0.05)
            assert thread_count(worker) <= bound, (before, thread_count(worker))
        finally:
            for s in idle:
                s.close()


@needs_gunicorn
def test_multiprocess_port_range_serves_each_workers_own_values(tmp_path):
    mp_dir = tmp_path / "multiproc"
    mp_dir.mkdir()
    port, *exporters = free_ports(4)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "EXPORTS_PORT_RANGE": f"{exporters[0]}-{exporters[-1]}"}
    with serve(gunicorn(port, workers=3), [port, *exporters], tmp_path, **env):
        for _ in range(60):
            assert get(port, "/ok")[0] == 200
        per_port = [ok_count(get(p)[2]) for p in exporters]
        aggregate = ok_count(get(port)[2])
    # Prometheus scrapes every port of the range and sums: the sum is the real count, not 3x.
    assert sum(per_port) == 60, per_port
    assert all(v < 60 for v in per_port) or sorted(per_port) == [0, 0, 60], per_port
    assert aggregate == 60


@needs_gunicorn
def test_multiprocess_single_port_serves_the_aggregate(tmp_path):
    mp_dir = tmp_path / "multiproc"
    mp_dir.mkdir()
    port, export = free_ports(2)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "EXPORTS_PORT": str(export)}
    with serve(gunicorn(port, workers=2), [port, export], tmp_path, **env):
        for _ in range(40):
            assert get(port, "/ok")[0] == 200
        # Whichever worker bound the port (the other logs that it is in use): every worker's counts.
        assert ok_count(get(export)[2]) == 40


def runserver(port: int, *extra: str) -> list[str]:
    return ["django", "runserver", f"{HOST}:{port}", *extra]


def test_runserver_with_the_autoreloader_serves_no_stale_port_and_says_why(tmp_path):
    port, export = free_ports(2)
    with serve(runserver(port), [port], tmp_path, EXPORTS_PORT=str(export)) as server:
        assert get(port, "/ok")[0] == 200
        assert not listening(export), "a port exporter in the reloader's parent serves frozen numbers"
        text = server.log.read_text()
    assert "--noreload" in text and "autoreloader" in text


def test_runserver_noreload_port_serves_live_numbers(tmp_path):
    port, export = free_ports(2)
    with serve(runserver(port, "--noreload"), [port, export], tmp_path, EXPORTS_PORT=str(export)):
        before = ok_count(get(export)[2])
        for _ in range(3):
            assert get(port, "/ok")[0] == 200
        assert ok_count(get(export)[2]) == before + 3


# --- Access rules through real servers: wrong or missing credentials never get a metric byte ---

AUTH = {"PROMETHEUS_METRICS_BEARER_TOKENS": ["s3cret-token"], "PROMETHEUS_METRICS_BASIC_AUTH": {"prom": "pw"}}
GOOD = ["Bearer s3cret-token", "Basic " + base64.b64encode(b"prom:pw").decode()]
BAD = [None, "Bearer", "Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer S3CRET-TOKEN",
       "Basic " + base64.b64encode(b"prom:pwx").decode(), "Basic " + base64.b64encode(b"prom").decode(),
       "Basic %%%", "Digest s3cret-token", "s3cret-token", "Bearer " + "x" * 4000]  # fmt: skip


def assert_no_metric_bytes(status: int, expected: int, body: bytes) -> None:
    assert status == expected, (status, body[:200])
    assert b"django_" not in body and b"# TYPE" not in body and b"# HELP" not in body, body[:200]
    assert b"python_info" not in body


def assert_guarded(port: int) -> None:
    for authorization in BAD:
        headers = {} if authorization is None else {"Authorization": authorization}
        for extra in ({}, {"Accept": "application/openmetrics-text", "Accept-Encoding": "gzip"}):
            status, response_headers, body = get(port, "/metrics?name[]=python_info", {**headers, **extra})
            assert_no_metric_bytes(status, 401, body)
            assert "Bearer" in response_headers["www-authenticate"], response_headers
    for authorization in GOOD:
        status, _, body = get(port, headers={"Authorization": authorization})
        assert status == 200 and b"django_http_requests_before_middlewares_total" in body


@pytest.mark.parametrize("server", [pytest.param(gunicorn, marks=needs_gunicorn),
                                    pytest.param(uvicorn, marks=needs_uvicorn)])  # fmt: skip
def test_credentials_guard_the_view_and_the_port(tmp_path, server):
    port, export = free_ports(2)
    env = {"EXPORTS_PORT": str(export), "EXPORTS_SETTINGS": json.dumps(AUTH)}
    with serve(server(port), [port, export], tmp_path, **env):
        assert_guarded(port)
        assert_guarded(export)


@needs_gunicorn
def test_allowed_ips_and_trusted_proxies_guard_the_view_and_the_port_range(tmp_path):
    port, *exporters = free_ports(3)
    rules = {
        "PROMETHEUS_METRICS_ALLOWED_IPS": ["10.0.0.0/8"],
        "PROMETHEUS_METRICS_TRUSTED_PROXIES": ["127.0.0.1"],
    }
    env = {"EXPORTS_PORT_RANGE": f"{exporters[0]}-{exporters[-1]}", "EXPORTS_SETTINGS": json.dumps(rules)}
    with serve(gunicorn(port, workers=2), [port, *exporters], tmp_path, **env):
        for target in (port, *exporters):
            for forwarded in (None, "10.0.0.5, 192.0.2.1", "garbage", "::1"):
                headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
                status, _, body = get(target, headers=headers)
                assert_no_metric_bytes(status, 403, body)
            for forwarded in ("10.0.0.5", "192.0.2.1, 10.0.0.5"):
                status, _, body = get(target, headers={"X-Forwarded-For": forwarded})
                assert status == 200 and b"django_http_requests_before_middlewares_total" in body
