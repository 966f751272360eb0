"""Content negotiation as the Prometheus scrape protocol says, with the headers Prometheus 2 and 3 send.

``content_negotiation.md`` (prometheus/docs) and prometheus_client's
``choose_encoder``: the text format 0.0.4 by default and for ``*/*``; the 1.0.0
formats only when asked for, their Content-Type then naming the escaping
scheme; OpenMetrics 0.0.1 when it ranks first; names outside the legacy
character set (users' own metrics, UTF-8 since prometheus_client 0.22) kept
for ``allow-utf-8`` and escaped for ``underscores`` (no scheme named),
``dots`` and ``values``. On the view here, on the port and the port range
through real servers below; both cores (the suite runs twice, and the
byte-for-byte tests go through the core's writer).
"""

from __future__ import annotations

import gzip
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import prometheus_client
import pytest
from django.test import Client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as openmetrics

from django_prometheus import exports, metrics, negotiation, text_format
from tests.test_exports_servers import (
    HOST,
    free_ports,
    gunicorn,
    needs_gunicorn,
    needs_uvicorn,
    serve,
    uvicorn,
)

pytestmark = pytest.mark.urls("tests.http_project.urls")

# The literal headers (Prometheus 3's scrape.go defaults; Prometheus 2.5x's).
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_3_UNDERSCORES = PROMETHEUS_3.replace("allow-utf-8", "underscores")
PROMETHEUS_3_TEXT = (
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_3_PROTOBUF_FIRST = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,"
    + PROMETHEUS_3
)
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_2_OLD = "application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"


def om(escaping: str) -> str:
    return f"application/openmetrics-text; version=1.0.0; charset=utf-8; escaping={escaping}"


def text(escaping: str) -> str:
    return f"text/plain; version=1.0.0; charset=utf-8; escaping={escaping}"


OM_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8"

# (Accept, Content-Type, escaping)
CASES = [
    (PROMETHEUS_3, om("allow-utf-8"), "allow-utf-8"),
    (PROMETHEUS_3_UNDERSCORES, om("underscores"), "underscores"),
    (PROMETHEUS_3_TEXT, text("allow-utf-8"), "allow-utf-8"),
    (PROMETHEUS_3_TEXT.replace("allow-utf-8", "underscores"), text("underscores"), "underscores"),
    (PROMETHEUS_3_PROTOBUF_FIRST, om("allow-utf-8"), "allow-utf-8"),  # choose() without protobuf=True
    (PROMETHEUS_2, om("underscores"), "underscores"),  # no scheme named: underscores
    (PROMETHEUS_2_OLD, OM_0_0_1, "underscores"),
    (None, TEXT_0_0_4, "underscores"),
    ("", TEXT_0_0_4, "underscores"),
    ("*/*", TEXT_0_0_4, "underscores"),
    ("text/plain", TEXT_0_0_4, "underscores"),
    ("text/plain;version=0.0.4", TEXT_0_0_4, "underscores"),
    ("text/plain;version=1.0.0", text("underscores"), "underscores"),
    ("text/plain;version=1.0.0;escaping=dots", text("dots"), "dots"),
    ("text/plain;version=1.0.0;escaping=values", text("values"), "values"),
    ("application/openmetrics-text;version=1.0.0;escaping=dots", om("dots"), "dots"),
    ("application/openmetrics-text;version=1.0.0;escaping=values", om("values"), "values"),
    ("application/openmetrics-text;version=1.0.0;escaping=allow-utf8", om("underscores"), "underscores"),
    ("application/openmetrics-text;version=1.0.0;escaping=nonsense", om("underscores"), "underscores"),
    ("application/openmetrics-text", om("underscores"), "underscores"),
    ("application/openmetrics-text;version=0.0.1;escaping=allow-utf-8", OM_0_0_1, "underscores"),
    ("application/openmetrics-text;version=2.0.0,text/plain;version=0.0.4;q=0.1", TEXT_0_0_4, "underscores"),
    (
        "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.8",
        TEXT_0_0_4,
        "underscores",
    ),
    (
        "*/*;q=0.5,application/openmetrics-text;q=0.5",
        om("underscores"),
        "underscores",
    ),  # a named type wins a tie
    ("application/openmetrics-text;q=0,*/*", TEXT_0_0_4, "underscores"),
    ("image/png,application/json", TEXT_0_0_4, "underscores"),
]


#: What the exporters answer in text: every case but the one they answer in protobuf (test_protobuf.py).
TEXT_CASES = [case for case in CASES if case[0] != PROMETHEUS_3_PROTOBUF_FIRST]
PROTOBUF_CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)


@pytest.mark.parametrize(("accept", "content_type", "escaping"), CASES)
def test_choose(accept, content_type, escaping):
    chosen = negotiation.choose(accept)
    assert (chosen.content_type, chosen.escaping) == (content_type, escaping)
    assert chosen.openmetrics is content_type.startswith("application/openmetrics-text")


@pytest.mark.parametrize(
    "accept",
    [PROMETHEUS_3, PROMETHEUS_3_UNDERSCORES, PROMETHEUS_3_TEXT, PROMETHEUS_2, None, "*/*", "text/plain",
     "text/plain;version=1.0.0;escaping=dots", "application/openmetrics-text;version=1.0.0;escaping=values"],
)  # fmt: skip
def test_the_content_type_is_prometheus_clients_for_what_prometheus_sends(accept):
    # Where we differ on purpose: OpenMetrics 0.0.1 asked first (prometheus_client skips it and
    # answers text 0.0.4), q values (it takes the first it knows), OpenMetrics without a
    # version (it names no escaping, which the spec asks of every 1.0.0 answer).
    assert negotiation.choose(accept).content_type == choose_encoder(accept)[1]


def test_the_protobuf_seam():
    chosen = negotiation.choose(PROMETHEUS_3_PROTOBUF_FIRST, protobuf=True)
    assert chosen.kind == negotiation.PROTOBUF
    assert chosen.content_type == (
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; "
        "escaping=underscores"
    )
    assert negotiation.choose(PROMETHEUS_3, protobuf=True).kind == negotiation.OPENMETRICS
    wrong = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
    assert negotiation.choose(wrong, protobuf=True) == negotiation.TEXT_0_0_4


def test_an_unsupported_scheme_is_answered_with_underscores_and_said_so():
    only = frozenset({negotiation.UNDERSCORES, negotiation.ALLOW_UTF8})
    chosen = negotiation.choose("text/plain;version=1.0.0;escaping=dots", schemes=only)
    assert chosen.content_type == text("underscores")


# --- the bytes: users' UTF-8 names per scheme, ours legacy (escaped by dots only) -------------

UTF8_NAME = "dp.negotiation.requests"
OURS = "django_negotiation_ours_total"


def utf8_registry() -> CollectorRegistry:
    r = CollectorRegistry()
    theirs = prometheus_client.Counter(UTF8_NAME, "A user's UTF-8 name.", ["http.method"], registry=r)
    theirs.labels("GET").inc(2)
    metrics.Counter("django_negotiation_ours", "Ours.", ["view"], registry=r).labels("v").inc(3)
    h = metrics.Histogram("django_negotiation_h", "Ours.", ["view"], registry=r, buckets=(0.1, 1))
    h.labels("v").observe(0.5)
    prometheus_client.Gauge("dp_negotiation_legacy", "Theirs, legacy.", registry=r).set(1)
    return r


# prometheus_client's OpenMetrics writer escapes a legacy sample name under ``values`` too
# (``U__django__negotiation__ours__total`` under ``# TYPE django_negotiation_ours``); its text
# writer, Go's expfmt and the escaping spec leave legacy names as they are, as ours does.
OM_VALUES = "application/openmetrics-text;version=1.0.0;escaping=values"


@pytest.mark.parametrize("accept", [c[0] for c in CASES if c[0] != OM_VALUES])
def test_render_writes_what_prometheus_clients_writers_write(accept):
    r = utf8_registry()
    chosen = negotiation.choose(accept)
    expected = (openmetrics.generate_latest if chosen.openmetrics else generate_latest)(
        r, escaping=chosen.escaping
    )
    assert text_format.render(r, chosen.openmetrics, None, chosen.escaping) == expected


@pytest.mark.parametrize(
    ("escaping", "name", "ours"),
    [
        ("allow-utf-8", '{"dp.negotiation.requests_total","http.method"="GET"} 2.0', OURS),
        ("underscores", 'dp_negotiation_requests_total{http_method="GET"} 2.0', OURS),
        ("dots", 'dp_dot_negotiation_dot_requests__total{http_dot_method="GET"} 2.0',
         "django__negotiation__ours__total"),
        ("values", 'U__dp_2e_negotiation_2e_requests__total{U__http_2e_method="GET"} 2.0', OURS),
    ],
)  # fmt: skip
def test_names_per_scheme(escaping, name, ours):
    body = text_format.render(utf8_registry(), False, None, escaping).decode()
    assert name in body.splitlines()
    assert f'{ours}{{view="v"}} 3.0' in body.splitlines()
    body = text_format.render(utf8_registry(), True, None, escaping).decode()
    assert f'{ours}{{view="v"}} 3.0' in body.splitlines()


_OURS = metrics.Counter("dp_negotiation_view_ours", "Ours, in the default registry.")
_OURS.inc()


def test_the_view_answers_prometheus_3_and_2_as_the_spec_says():
    prometheus_client.Counter(UTF8_NAME, "A user's UTF-8 name.", ["http.method"]).labels("GET").inc()
    try:
        client = Client()
        protobuf = client.get("/metrics", headers={"accept": PROMETHEUS_3_PROTOBUF_FIRST})
        assert protobuf["Content-Type"] == PROTOBUF_CONTENT_TYPE  # the exporters write protobuf
        for accept, content_type, escaping in TEXT_CASES:
            headers = {} if accept is None else {"accept": accept}
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 200
            assert response["Content-Type"] == content_type, accept
            body = response.content.decode()
            assert ('{"dp.negotiation.requests_total"' in body) is (escaping == "allow-utf-8"), accept
            assert ("dp_negotiation_view_ours_total 1.0" in body) is (escaping != "dots"), accept
            assert ("dp__negotiation__view__ours__total 1.0" in body) is (escaping == "dots"), accept
            assert body.endswith("# EOF\n") is content_type.startswith("application/openmetrics-text")
    finally:
        prometheus_client.REGISTRY.unregister(prometheus_client.REGISTRY._names_to_collectors[UTF8_NAME])


# --- the port and the port range, through real servers -----------------------------------------


def scrape(port: int, accept: str | None) -> tuple[str, str]:
    headers = {"Accept-Encoding": "gzip"} if accept is None else {"Accept": accept, "Accept-Encoding": "gzip"}
    request = urllib.request.Request(f"http://{HOST}:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Content-Type"], gzip.decompress(response.read()).decode()


def assert_negotiates(port: int) -> None:
    for accept, content_type, escaping in TEXT_CASES:
        got, body = scrape(port, accept)
        assert got == content_type, (port, accept)
        assert ('{"exports.utf8.requests_total"' in body) is (escaping == "allow-utf-8"), accept
        assert ("exports_utf8_requests_total" in body) is (escaping == "underscores"), accept
        assert ("django_http_requests_before_middlewares_total" in body) is (escaping != "dots"), accept


def _until_loaded(port: int) -> None:
    """Wait until the worker behind an export port has loaded the middlewares: the port starts
    in ``ready()``, the HTTP families are registered when the worker builds its handler."""
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=30) as response:
            if b"django_http_requests_before_middlewares_total" in response.read():
                return
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize("server", [pytest.param(gunicorn, marks=needs_gunicorn, id="gunicorn"),
                                    pytest.param(uvicorn, marks=needs_uvicorn, id="uvicorn")])  # fmt: skip
def test_the_view_the_port_and_the_port_range_negotiate_alike(tmp_path, server):
    port, export, *port_range = free_ports(4)
    env = {"EXPORTS_SETTINGS": json.dumps({}), "EXPORTS_UTF8_METRIC": "1"}
    with serve(server(port), [port, export], tmp_path, EXPORTS_PORT=str(export), **env):
        assert_negotiates(port)
        _until_loaded(export)
        assert_negotiates(export)
    env["EXPORTS_PORT_RANGE"] = f"{port_range[0]}-{port_range[1]}"
    with serve(server(port), [port, port_range[0]], tmp_path, **env):
        _until_loaded(port_range[0])
        assert_negotiates(port_range[0])


# --- a real Prometheus: the header it sends, and that it ingests the answer ------------------


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus (scripts/services.sh install)")
def test_a_real_prometheus_sends_a_literal_header_and_ingests_the_answer(tmp_path, monkeypatch):
    """Debian's Prometheus scrapes a recorder (its Accept header) and a port exporter of ours."""
    monkeypatch.delenv("RUN_MAIN", raising=False)
    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Accept", ""))
            body = b"recorded 1\n"
            self.send_response(200)
            self.send_header("Content-Type", TEXT_0_0_4)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    recorder = http.server.ThreadingHTTPServer((HOST, 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    export, web = free_ports(2)
    thread = exports.SetupPrometheusEndpointOnPort(export, HOST)
    assert thread is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n"
        f"  - {{job_name: recorder, static_configs: [{{targets: ['{HOST}:{recorder.server_port}']}}]}}\n"
        f"  - {{job_name: ours, static_configs: [{{targets: ['{HOST}:{export}']}}]}}\n"
    )
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={HOST}:{web}"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        up: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(up) < 2 or not seen):
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://{HOST}:{web}/api/v1/targets", timeout=5) as r:
                    targets = json.load(r)["data"]["activeTargets"]
            except OSError:
                continue
            up = {t["labels"]["job"]: t["lastError"] for t in targets if t["health"] == "up"}
        assert set(up) == {"recorder", "ours"}, log.read_text(errors="replace")[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        recorder.shutdown()
        recorder.server_close()
        thread.httpd.shutdown()
        thread.httpd.server_close()
        exports._servers.remove(thread)
    assert seen[0] in (PROMETHEUS_2, PROMETHEUS_3), seen[0]  # the literal headers above, as sent
    chosen = negotiation.choose(seen[0])
    assert chosen.kind == negotiation.OPENMETRICS and chosen.version == "1.0.0"
