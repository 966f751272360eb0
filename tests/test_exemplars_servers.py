"""Exemplars behind real servers: gunicorn (WSGI) and uvicorn (ASGI) over loopback.

tests/exemplars_project puts a real OpenTelemetry SDK span around each request
(``X-Trace`` picks a recording, a non-recording or no span). Scraped with
``Accept: application/openmetrics-text`` from the /metrics view and from the
port exporter, upstream's two latency histograms carry the ids of the last
recording span observed into each bucket; the text format carries none.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from tests.servers import free_port, serve

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}
BEFORE = "django_http_requests_latency_including_middlewares_seconds"
BY_VIEW = "django_http_requests_latency_seconds_by_view_method"


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the port exporter did not listen on {port}")
            time.sleep(0.1)


def _exemplars(text: str, family: str) -> list:
    return [
        s.exemplar
        for f in om_parse(text)  # prometheus_client's OpenMetrics parser must accept the whole body
        if f.name == family
        for s in f.samples
        if s.exemplar is not None
    ]


def _scenario(base: str, export: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        # Non-recording spans and no span: observed, but no exemplar.
        for mode in ("unsampled", "none"):
            for path in ("/ok", "/aok"):
                r = client.get(path, headers={"X-Trace": mode})
                assert r.status_code == 200
        samples = client.get("/metrics", headers=OPENMETRICS).text
        assert _exemplars(samples, BEFORE) == [] and _exemplars(samples, BY_VIEW) == []
        assert f'{BY_VIEW}_count{{method="GET",view="ok"}} 2.0' in samples

        # Recording spans, sync and async views: each bucket keeps the latest observed into it.
        spans = []
        for path in ("/ok", "/aok", "/ok"):
            r = client.get(path, headers={"X-Trace": "recording"})
            assert r.headers["X-Recording"] == "True"
            spans.append((path, {"trace_id": r.headers["X-Trace-Id"], "span_id": r.headers["X-Span-Id"]}))
        body = client.get("/metrics", headers=OPENMETRICS).text
        assert body.endswith("# EOF\n")
        by_view: dict[str, list] = {}
        for f in om_parse(body):
            if f.name == BY_VIEW:
                for s in f.samples:
                    if s.exemplar is not None:
                        by_view.setdefault(s.labels["view"], []).append(s.exemplar.labels)
        ok = [ids for path, ids in spans if path == "/ok"]
        assert by_view["aok"] == [spans[1][1]]
        assert spans[2][1] in by_view["ok"] and all(ids in ok for ids in by_view["ok"])
        assert set(by_view) == {"ok", "aok"}  # the scrapes ran without a span
        before = _exemplars(body, BEFORE)
        assert spans[2][1] in [e.labels for e in before]  # the last request's bucket
        assert all(e.labels in [ids for _, ids in spans] for e in before)
        assert all(0 < e.value < 60 and abs(float(e.timestamp) - time.time()) < 120 for e in before)

        # The text format never shows them.
        text = client.get("/metrics").text
        assert "trace_id" not in text and f"{BY_VIEW}_bucket" in text

    # The port exporter renders the same exemplars, in OpenMetrics only.
    _wait_for(export)
    with httpx.Client(timeout=30) as client:
        exported = client.get(f"http://127.0.0.1:{export}/metrics", headers=OPENMETRICS).text
        assert [e.labels for e in _exemplars(exported, BEFORE)] == [e.labels for e in before]
        assert "trace_id" not in client.get(f"http://127.0.0.1:{export}/metrics").text


def _serve(args: list[str], port: int, log: Path, export: int):
    return serve(args, port, log, "tests.exemplars_project.settings", EXEMPLARS_PORT=str(export))


def test_gunicorn_wsgi_exemplars(tmp_path):
    port, export = free_port(), free_port()
    args = ["gunicorn", "tests.exemplars_project.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1"]
    with _serve(args, port, tmp_path / "gunicorn.log", export) as base:
        _scenario(base, export)


def test_uvicorn_asgi_exemplars(tmp_path):
    port, export = free_port(), free_port()
    args = [
        "uvicorn",
        "tests.exemplars_project.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--no-access-log",
    ]
    with _serve(args, port, tmp_path / "uvicorn.log", export) as base:
        _scenario(base, export)
