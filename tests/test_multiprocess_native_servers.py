"""gunicorn's workers write native histograms; a protobuf scrape merges them exactly.

Two sync workers, recycled every few dozen requests (``child_exit`` compacts the
dead ones' files, native files included), serve requests whose body sizes
the test chooses: the native parts of the body-size histograms are then
known bucket by bucket, and every latency child's native count is the number
of requests sent to it.
"""

from __future__ import annotations

import collections
import http.client
import os
import shutil
import sys
import threading

import pytest
from django_prometheus._core import _native_py

from tests.mp_servers import HOST, free_port_range, start, stop
from tests.test_protobuf import PROTO, decode, labels_of, pb, populated  # noqa: F401

SIZES = [0, 1, 2, 3, 7, 100, 1000, 1024, 1025, 4096, 12345, 65536]
# (method, path, request body size, response body size)
PLAN = [("POST", "/ok", size, 2) for size in SIZES] + [("GET", "/ok", 0, 2), ("POST", "/create", 5, 7)]


def _request(port: int, method: str, path: str, size: int, accept: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        headers = {"Accept": accept} if accept else {}
        conn.request(method, path, body=b"x" * size if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _native(hist) -> tuple[int, float, int, list, list]:
    return (
        hist.schema,
        hist.zero_threshold,
        hist.zero_count,
        populated(hist.positive_span, hist.positive_delta),
        populated(hist.negative_span, hist.negative_delta),
    )


def _expected(values: list[float]) -> tuple[int, float, int, list, list]:
    nh = _native_py.NativeHistogram(3, 2.0**-128, 160)  # the settings' defaults: schema 3 from 1.1
    for v in values:
        nh.observe(v)
    return nh.state()


@pytest.mark.services
@pytest.mark.skipif(
    shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None, reason="no gunicorn"
)
def test_gunicorn_workers_native_histograms_are_exact_in_a_protobuf_scrape(mp_server_project, pb):  # noqa: F811 - pb: the fixture imported above
    env, mp_dir = mp_server_project
    env["MP_NATIVE"] = "1"
    (port,) = free_port_range(1)
    cmd = [sys.executable, "-m", "gunicorn", "tests.mp_project.wsgi:application", "-b", f"{HOST}:{port}",
           "-w", "2", "--max-requests", "40", "--max-requests-jitter", "10", "--graceful-timeout", "5",
           "-c", "tests/mp_project/gunicorn.conf.py"]  # fmt: skip
    plan = PLAN * 12
    proc = start(cmd, env, port, mp_dir.parent / "server.log")
    errors: list[str] = []
    try:
        it, lock = iter(plan), threading.Lock()

        def send() -> None:
            while True:
                with lock:
                    item = next(it, None)
                if item is None:
                    return
                method, path, size, _ = item
                status, _ = _request(port, method, path, size)
                if status not in (200, 201):
                    errors.append(f"{item}: {status}")

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status, body = _request(port, "GET", "/metrics", 0, accept=PROTO)
        text_status, text = _request(port, "GET", "/metrics", 0)
    finally:
        log = stop(proc)
    assert not errors, errors[:5]
    assert status == 200 and text_status == 200, log[-3000:]
    families = {f.name: f for f in decode(pb, body)}
    # Requests' body sizes: every request sent, plus the scrape's own (no body: 0).
    (req,) = families["django_http_requests_body_total_bytes"].metric
    sizes = [float(size) for _, _, size, _ in plan] + [0.0]
    assert _native(req.histogram) == _expected(sizes)
    assert req.histogram.sample_count == len(sizes)
    # Responses' sizes (the scrapes' own are observed after their bodies are written).
    (resp,) = families["django_http_responses_body_total_bytes"].metric
    assert _native(resp.histogram) == _expected([float(out) for *_, out in plan])
    # Latency by view and method: one observation per request, classic and native alike.
    sent = collections.Counter((path.strip("/"), method) for method, path, _, _ in plan)
    seen = {}
    for m in families["django_http_requests_latency_seconds_by_view_method"].metric:
        h = m.histogram
        labels = labels_of(m)
        schema, _, zero, pos, neg = _native(h)
        assert schema <= 3 and not neg
        seen[labels["view"], labels["method"]] = (zero + sum(c for _, c in pos), h.sample_count)
    for key, n in sent.items():
        assert seen[key] == (n, n), key
    # Workers were recycled: their native files were folded into the archive by child_exit.
    names = os.listdir(mp_dir)
    assert "native_django_archive.native" in names, names
    assert not [n for n in names if n.startswith("native") and n.endswith(".db")]
    # The text format shows the classic histograms only, with the same counts.
    assert b"django_http_requests_body_total_bytes_count %d.0" % len(sizes) not in text  # the 2nd scrape
    assert b"django_http_requests_body_total_bytes_count %d.0" % (len(sizes) + 1) in text
    assert b"schema" not in text and b"native_django" not in text
