"""The opt-in HTTP features behind real servers over loopback: gunicorn (WSGI) and uvicorn (ASGI).

Each test starts one server on 127.0.0.1 serving tests/features_project (every
feature on, ``/metrics`` excluded by path), sends real requests, abandons a
streaming response mid-way and scrapes /metrics from the same process.
"""

from __future__ import annotations

import importlib.util
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import Samples, free_port, parse_samples, sample_value, serve

ROUTE = "django_http_route_requests_total"
INFLIGHT = "django_http_requests_in_progress"
NINJA = importlib.util.find_spec("ninja") is not None  # not on free-threaded CPython (no pydantic-core)


def _samples(client: httpx.Client) -> Samples:
    return parse_samples(client.get("/metrics").text)


_v = sample_value


def _abandon(base: str, path: str) -> None:
    """Start reading a long streaming response, then hang up."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        received = b""
        while len(received) < 4096:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream first"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")


def _scenario(base: str, stream_path: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(20):
            assert client.get("/ok").status_code == 200
        for pk in range(10):
            assert client.get(f"/shop/items/{pk}/").status_code == 200
        assert client.get("/drf/items/3/").status_code == 200
        if NINJA:
            assert client.get("/ninja/things/4").status_code == 200
            assert client.post("/ninja/things").status_code == 200
        for _ in range(5):
            assert client.get("/boom").status_code == 500
        for i in range(200):
            verb = "XQ" + "".join(chr(65 + int(c)) for c in str(i))  # gunicorn takes letters only
            assert client.request(verb, f"/hostile/{i}").status_code == 404
        for path in ("/untracked", "/untracked-class", "/by-name"):
            assert client.get(path).status_code == 200
        stamp = f"t={time.time() - 0.1:.6f}"
        assert client.get("/ok", headers={"X-Request-Start": stamp}).status_code == 200
        assert client.get("/probe").text == "1.0"  # itself, while it runs
        _abandon(base, stream_path)
        # the server notices the hang-up at its next write, then closes the response
        deadline = time.monotonic() + 20
        while True:
            samples = _samples(client)
            if _v(samples, INFLIGHT, method="GET") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert _v(samples, INFLIGHT, method="GET") == 0
    assert _v(samples, ROUTE, route="ok", method="GET", status="200") == 21
    assert _v(samples, ROUTE, route="shop/items/<int:pk>/", method="GET", status="200") == 10
    assert _v(samples, ROUTE, route="drf/items/(?P<pk>[^/.]+)/$", method="GET", status="200") == 1
    assert _v(samples, ROUTE, route="ninja/things/<thing_id>", method="GET", status="200") == NINJA
    assert _v(samples, ROUTE, route="ninja/things", method="POST", status="200") == NINJA
    assert _v(samples, ROUTE, route="boom", method="GET", status="500") == 5
    assert _v(samples, ROUTE, route="<unmatched>", method="<invalid method>", status="404") == 200
    assert _v(samples, ROUTE, route=stream_path.strip("/"), method="GET", status="200") == 1
    routes = {dict(k[1])["route"] for k in samples if k[0] == ROUTE}
    assert routes == {
        "ok",
        "shop/items/<int:pk>/",
        "drf/items/(?P<pk>[^/.]+)/$",
        *(("ninja/things/<thing_id>", "ninja/things") if NINJA else ()),
        "boom",
        "<unmatched>",
        "probe",
        stream_path.strip("/"),
    }  # no excluded view, no /metrics, no raw path
    assert _v(samples, "django_http_route_request_duration_seconds_count", route="ok", method="GET") == 21
    assert _v(samples, "django_http_request_queue_seconds_count") == 1
    assert 0.05 < _v(samples, "django_http_request_queue_seconds_sum") < 10
    # upstream's families skip the excluded requests too (only the ones above, the scrapes excluded)
    assert (
        _v(samples, "django_http_requests_total_by_method_total", method="GET")
        == 21 + 10 + 1 + NINJA + 5 + 1 + 1
    )
    vtm = "django_http_requests_total_by_view_transport_method_total"
    assert _v(samples, vtm, view="prometheus-django-metrics", transport="http", method="GET") == 0
    assert _v(samples, vtm, view="by-name", transport="http", method="GET") == 0


@pytest.mark.parametrize("core", ["compiled", "pure"])
def test_gunicorn_wsgi(tmp_path: Path, core: str):
    port = free_port()
    args = [
        "gunicorn",
        "tests.features_project.wsgi:application",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
    ]
    env = {"DJANGO_PROMETHEUS_NO_EXTENSIONS": "1" if core == "pure" else ""}
    with serve(args, port, tmp_path / "gunicorn.log", "tests.features_project.settings", **env) as base:
        _scenario(base, "/stream")


@pytest.mark.parametrize("core", ["compiled", "pure"])
def test_uvicorn_asgi(tmp_path: Path, core: str):
    port = free_port()
    args = [
        "uvicorn",
        "tests.features_project.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--no-access-log",
    ]
    env = {"DJANGO_PROMETHEUS_NO_EXTENSIONS": "1" if core == "pure" else ""}
    with serve(args, port, tmp_path / "uvicorn.log", "tests.features_project.settings", **env) as base:
        _scenario(base, "/astream")


def test_gunicorn_multiprocess_in_flight_is_a_livesum(tmp_path: Path):
    mp_dir = tmp_path / "mp"
    mp_dir.mkdir()
    port = free_port()
    args = ["gunicorn", "tests.features_project.wsgi:application", "-b", f"127.0.0.1:{port}"]
    args += ["-w", "2", "--worker-class", "gthread", "--threads", "4"]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    with serve(args, port, tmp_path / "gunicorn.log", "tests.features_project.settings", **env) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(40):
                with httpx.Client(base_url=base, timeout=30) as fresh:  # spread over the workers
                    assert fresh.get("/ok").status_code == 200
            host, port_text = base.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port_text)), timeout=10) as held:
                held.sendall(f"GET /stream HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                assert held.recv(4096).startswith(b"HTTP/1.1 200")
                samples = _samples(client)
                assert _v(samples, INFLIGHT, method="GET") == 1  # the held stream, in whichever worker
            deadline = time.monotonic() + 20
            while _v(samples, INFLIGHT, method="GET") != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
                samples = _samples(client)
    assert _v(samples, INFLIGHT, method="GET") == 0
    assert _v(samples, ROUTE, route="ok", method="GET", status="200") == 40
    assert list(mp_dir.glob("gauge_livesum_*.db")), sorted(p.name for p in mp_dir.iterdir())
