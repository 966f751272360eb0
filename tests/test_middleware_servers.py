"""The middlewares behind real servers over loopback: gunicorn (WSGI) and uvicorn (ASGI).

Each test starts one single-process server on 127.0.0.1 serving tests/http_project,
sends a fixed mix of a few hundred real HTTP requests, scrapes /metrics from the
same process and checks the counts exactly.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.servers import Samples, free_port, parse_samples, sample_value, serve


def _serve(args: list[str], port: int, log: Path):
    return serve(args, port, log, "tests.http_project.settings")


# (method, path, body, headers, times): 300 requests.
SCENARIO = [
    ("GET", "/ok", None, {}, 100),
    ("GET", "/ok", None, {"x-requested-with": "XMLHttpRequest"}, 5),
    ("GET", "/aok", None, {}, 45),
    ("POST", "/echo", b"x" * 100, {}, 50),
    ("GET", "/boom", None, {}, 25),
    ("GET", "/aboom", None, {}, 15),
    ("GET", "/nowhere", None, {}, 30),
    ("BREW", "/ok", None, {}, 20),
    ("GET", "/stream", None, {}, 10),
]


def _run_scenario(base: str) -> Samples:
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for method, path, body, headers, times in SCENARIO:
            for _ in range(times):
                response = client.request(method, path, content=body, headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert statuses == {200: 230, 500: 40, 404: 30}
        return parse_samples(client.get("/metrics").text)


def _check(samples: Samples) -> None:
    def v(name: str, **labels: str) -> float:
        return sample_value(samples, name, **labels)

    # The scrape itself is counted on the way in, not yet on the way out.
    assert v("django_http_requests_before_middlewares_total") == 301
    assert v("django_http_responses_before_middlewares_total") == 300
    assert v("django_http_requests_latency_including_middlewares_seconds_count") == 300
    assert v("django_http_requests_total_by_method_total", method="GET") == 231
    assert v("django_http_requests_total_by_method_total", method="POST") == 50
    assert v("django_http_requests_total_by_method_total", method="<invalid method>") == 20
    assert v("django_http_requests_total_by_transport_total", transport="http") == 301
    assert v("django_http_ajax_requests_total") == 5
    assert v("django_http_requests_body_total_bytes_count") == 301
    assert v("django_http_requests_body_total_bytes_sum") == 5000
    vtm = "django_http_requests_total_by_view_transport_method_total"
    assert v(vtm, view="ok", transport="http", method="GET") == 105
    assert v(vtm, view="aok", transport="http", method="GET") == 45
    assert v(vtm, view="ok", transport="http", method="<invalid method>") == 20
    assert v(vtm, view="prometheus-django-metrics", transport="http", method="GET") == 1
    assert v("django_http_responses_total_by_status_total", status="200") == 230
    assert v("django_http_responses_total_by_status_total", status="500") == 40
    assert v("django_http_responses_total_by_status_total", status="404") == 30
    svm = "django_http_responses_total_by_status_view_method_total"
    assert v(svm, status="404", view="<unnamed view>", method="GET") == 30
    assert v(svm, status="200", view="echo", method="POST") == 50
    assert v("django_http_responses_total_by_charset_total", charset="utf-8") == 300
    assert v("django_http_responses_streaming_total") == 10
    assert v("django_http_responses_body_total_bytes_count") == 290
    lat = "django_http_requests_latency_seconds_by_view_method_count"
    assert v(lat, view="ok", method="GET") == 105
    assert v(lat, view="ok", method="<invalid method>") == 20
    # docs/install.md, What differs, 5: failing views counted by type and view, once each in latency.
    assert v(lat, view="boom", method="GET") == 25
    assert v(lat, view="aboom", method="GET") == 15
    assert v("django_http_exceptions_total_by_type_total", type="Boom") == 25
    assert v("django_http_exceptions_total_by_type_total", type="ValueError") == 15
    assert v("django_http_exceptions_total_by_view_total", view="boom") == 25
    assert v("django_http_exceptions_total_by_view_total", view="aboom") == 15
    assert v("django_http_requests_unknown_latency_total") == 0


def test_gunicorn_wsgi(tmp_path):
    port = free_port()
    args = ["gunicorn", "tests.http_project.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1"]
    with _serve(args, port, tmp_path / "gunicorn.log") as base:
        _check(_run_scenario(base))


def test_uvicorn_asgi(tmp_path):
    port = free_port()
    args = [
        "uvicorn",
        "tests.http_project.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--no-access-log",
    ]
    with _serve(args, port, tmp_path / "uvicorn.log") as base:
        _check(_run_scenario(base))


def _raw_request(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_gunicorn_an_absurd_content_length_is_ignored_and_the_latency_kept(tmp_path):
    # Issue 10.2: gunicorn passes a Content-Length of hundreds of digits on to Django.
    port = free_port()
    log = tmp_path / "gunicorn.log"
    args = ["gunicorn", "tests.http_project.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1"]
    with _serve(args, port, log) as base:
        length = b"Content-Length: " + b"9" * 400
        absurd = b"GET /ok HTTP/1.1\r\nHost: t\r\n" + length + b"\r\nConnection: close\r\n\r\n"
        for _ in range(20):
            answer = _raw_request(base, absurd)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nok"), answer[:200]
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/ok").status_code == 200
            samples = parse_samples(client.get("/metrics").text)

    def v(name: str, **labels: str) -> float:
        return sample_value(samples, name, **labels)

    lat = "django_http_requests_latency_seconds_by_view_method_count"
    assert v(lat, view="ok", method="GET") == 21  # every latency kept
    assert v("django_http_requests_latency_including_middlewares_seconds_count") == 21
    assert v("django_http_requests_unknown_latency_total") == 0
    # Only the well-formed requests (the plain GET and the scrape) are observed in the body-size histogram.
    assert v("django_http_requests_body_total_bytes_count") == 2
    assert v("django_http_requests_total_by_method_total", method="GET") == 22
    text = log.read_text()
    assert "OverflowError" not in text and "could not record" not in text, text[-3000:]
