"""The protobuf exposition, decoded by the reference implementations, not by our own reader.

Two decoders: client_model's ``metrics.proto`` (``tests/fixtures/metrics.proto``, upstream's
current one: created timestamps, units) compiled at test time by ``protoc`` into a module
for the ``protobuf`` package, and client_golang's own stack (prometheus/common's expfmt,
Debian 12's packages) through ``scripts/native_histograms/main.go``: it must read our bytes,
write them back with its encoder, and print them in its text format.
``scripts/services.sh install`` installs protoc and Go; a missing one fails, never skips.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import prometheus_client
import pytest
from django.test import Client
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeHistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus import exports, metrics, protobuf

REPO = Path(__file__).resolve().parent.parent
GO_PROGRAM = REPO / "scripts" / "native_histograms" / "main.go"
PROMETHEUS_2_42_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROTO = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
PROMETHEUS_2_42_ACCEPT_TEXT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    protoc = shutil.which("protoc")
    if protoc is None or not Path("/usr/include/google/protobuf/timestamp.proto").exists():
        pytest.fail("protoc and libprotobuf-dev are needed: scripts/services.sh install")
    out = tmp_path_factory.mktemp("metrics_pb")
    shutil.copy(REPO / "tests" / "fixtures" / "metrics.proto", out / "metrics.proto")
    subprocess.run([protoc, f"-I{out}", "-I/usr/include", f"--python_out={out}", "metrics.proto"], check=True)
    spec = importlib.util.spec_from_file_location("metrics_pb2", out / "metrics_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def golang(tmp_path_factory):
    go = shutil.which("go")
    if go is None or not Path("/usr/share/gocode/src/github.com/prometheus/common/expfmt").is_dir():
        pytest.fail("Go and client_golang are needed: scripts/services.sh install")
    out = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOCACHE": str(out / "cache")}
    binary = out / "native_histograms"
    subprocess.run([go, "build", "-o", str(binary), str(GO_PROGRAM)], check=True, env=env)

    def run(mode: str, data: bytes) -> bytes:
        done = subprocess.run([str(binary), mode], input=data, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    return run


def decode(pb, body: bytes) -> list:
    """Varint-length-delimited MetricFamily messages, as Prometheus reads them."""
    families, pos = [], 0
    while pos < len(body):
        size = shift = 0
        while True:
            byte = body[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        family = pb.MetricFamily()
        family.ParseFromString(body[pos : pos + size])
        pos += size
        families.append(family)
    assert pos == len(body)
    return families


def populated(spans, deltas) -> list[tuple[int, int]]:
    out, index, count, d = [], 0, 0, 0
    for n, span in enumerate(spans):
        index = span.offset if n == 0 else index + span.offset
        for _ in range(span.length):
            count += deltas[d]
            d += 1
            if count:
                out.append((index, count))
            index += 1
    return out


def labels_of(metric) -> dict[str, str]:
    return {p.name: p.value for p in metric.label}


def ts(timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9


@pytest.fixture
def registry():
    return CollectorRegistry()


def _ours(registry, native=True):
    c = metrics.Counter("dp_requests", "Requests.", ["view"], registry=registry)
    c.labels("home").inc(3)
    c.labels("about").inc()
    g = metrics.Gauge("dp_inflight", "In flight.", registry=registry)
    g.set(-2.5)
    h = metrics.Histogram(
        "dp_latency_seconds", "Latency.", ["view"], buckets=(0.01, 0.1, 1.0), registry=registry, native=native
    )
    for v in (0.0, 0.005, 0.02, 0.02, 0.3, 2.0, 1e-300, 7.5):
        h.labels("home").observe(v)
    h.labels("empty")
    return c, g, h


def test_our_families_come_from_the_cells_with_the_native_part(pb, registry):
    c, g, h = _ours(registry)
    families = {f.name: f for f in decode(pb, protobuf.render(registry))}
    assert list(families) == ["dp_requests_total", "dp_inflight", "dp_latency_seconds"]
    counter = families["dp_requests_total"]
    assert (counter.type, counter.help) == (pb.COUNTER, "Requests.")
    values = {labels_of(m)["view"]: m.counter.value for m in counter.metric}
    assert values == {"home": 3.0, "about": 1.0}
    home = c.labels("home")
    assert ts(counter.metric[0].counter.created_timestamp) == pytest.approx(home.created, abs=1e-6)
    gauge = families["dp_inflight"]
    assert (gauge.type, gauge.metric[0].gauge.value, list(gauge.metric[0].label)) == (pb.GAUGE, -2.5, [])
    hist = families["dp_latency_seconds"]
    assert hist.type == pb.HISTOGRAM
    by_view = {labels_of(m)["view"]: m.histogram for m in hist.metric}
    home_h = by_view["home"]
    assert home_h.sample_count == 8
    assert home_h.sample_sum == pytest.approx(9.845)
    assert [(b.upper_bound, b.cumulative_count) for b in home_h.bucket] == [(0.01, 3), (0.1, 5), (1.0, 6)]
    cell = h.labels("home")
    schema, zt, zero, pos, neg = cell.native.state()
    assert (home_h.schema, home_h.zero_threshold, home_h.zero_count) == (3, 2.0**-128, zero) == (3, zt, 2)
    assert populated(home_h.positive_span, home_h.positive_delta) == pos
    assert not home_h.negative_span and not neg
    assert sum(c for _, c in pos) + zero == home_h.sample_count
    assert ts(home_h.created_timestamp) == pytest.approx(cell.created, abs=1e-6)
    empty = by_view["empty"]
    assert (empty.sample_count, empty.schema, empty.zero_threshold) == (0, 3, 2.0**-128)


def test_without_the_native_part_histograms_are_classic_only(pb, registry):
    _ours(registry, native=False)
    (hist,) = [f for f in decode(pb, protobuf.render(registry)) if f.name == "dp_latency_seconds"]
    for m in hist.metric:
        assert not m.histogram.HasField("schema") and not m.histogram.HasField("zero_threshold")
        assert not m.histogram.positive_span


def test_fast_path_and_collect_path_agree(pb, registry):
    # Our cells written directly, and the same families through collect() (the foreign path).
    _ours(registry, native=False)
    fast = decode(pb, protobuf.render(registry))
    slow = decode(pb, protobuf.render_metrics(registry.collect()))
    assert fast == slow


def test_negative_buckets_leave_out_the_sum_as_the_text_format_does(pb, registry):
    h = metrics.Histogram("dp_delta", "Deltas.", buckets=(-1.0, 0.0, 1.0), registry=registry, native=True)
    for v in (-3.0, -0.5, 0.0, 0.5, 4.0):
        h.observe(v)
    (fam,) = decode(pb, protobuf.render(registry))
    hist = fam.metric[0].histogram
    assert not hist.HasField("sample_sum")
    assert (hist.sample_count, hist.zero_count) == (5, 1)
    assert [c for _, c in populated(hist.negative_span, hist.negative_delta)] == [1, 1]


class _Custom:
    def collect(self):
        yield GaugeHistogramMetricFamily(
            "dp_queue_size", "Queue sizes.", buckets=[("1", 4), ("+Inf", 6)], gsum_value=9
        )
        u = Metric("dp_untyped", "Untyped.", "unknown")
        u.add_sample("dp_untyped", {"k": "v"}, 1.5, timestamp=1700000000.25)
        yield u


def test_everyone_elses_families_are_mapped_as_for_the_text_format(pb, registry):
    counter = prometheus_client.Counter("pc_events", "Events.", ["kind"], registry=registry)
    counter.labels("a").inc(2, exemplar={"trace_id": "abc"})
    prometheus_client.Gauge("pc_temp", "Temp.", unit="celsius", registry=registry).set(21.5)
    summary = prometheus_client.Summary("pc_size", "Sizes.", registry=registry)
    summary.observe(3)
    summary.observe(4)
    hist = prometheus_client.Histogram("pc_seconds", "Secs.", buckets=(1, 2), registry=registry)
    hist.observe(1.5, exemplar={"trace_id": "t1"})
    prometheus_client.Info("pc_build", "Build.", registry=registry).info({"version": "1.2"})
    prometheus_client.Enum("pc_state", "State.", states=["up", "down"], registry=registry).state("down")
    registry.register(_Custom())
    families = {f.name: f for f in decode(pb, protobuf.render(registry))}
    assert list(families) == [
        "pc_events_total", "pc_temp_celsius", "pc_size", "pc_seconds", "pc_build_info", "pc_state",
        "dp_queue_size", "dp_untyped",
    ]  # fmt: skip
    ev = families["pc_events_total"].metric[0]
    assert (ev.counter.value, labels_of(ev)) == (2.0, {"kind": "a"})
    assert {p.name: p.value for p in ev.counter.exemplar.label} == {"trace_id": "abc"}
    assert ev.counter.exemplar.value == 2.0 and ev.counter.HasField("created_timestamp")
    temp = families["pc_temp_celsius"]
    assert (temp.type, temp.unit, temp.metric[0].gauge.value) == (pb.GAUGE, "celsius", 21.5)
    size = families["pc_size"]
    assert size.type == pb.SUMMARY
    assert (size.metric[0].summary.sample_count, size.metric[0].summary.sample_sum) == (2, 7.0)
    assert size.metric[0].summary.HasField("created_timestamp")
    secs = families["pc_seconds"].metric[0].histogram
    assert [(b.upper_bound, b.cumulative_count) for b in secs.bucket] == [(1.0, 0), (2.0, 1)]
    assert {p.name: p.value for p in secs.bucket[1].exemplar.label} == {"trace_id": "t1"}
    assert (secs.sample_count, secs.sample_sum) == (1, 1.5)
    build = families["pc_build_info"]
    assert (build.type, labels_of(build.metric[0]), build.metric[0].gauge.value) == (
        pb.GAUGE,
        {"version": "1.2"},
        1,
    )
    state = families["pc_state"]
    assert {labels_of(m)["pc_state"]: m.gauge.value for m in state.metric} == {"up": 0.0, "down": 1.0}
    queue = families["dp_queue_size"]
    assert queue.type == pb.GAUGE_HISTOGRAM
    assert (queue.metric[0].histogram.sample_count, queue.metric[0].histogram.sample_sum) == (6, 9.0)
    untyped = families["dp_untyped"]
    assert (untyped.type, untyped.metric[0].untyped.value) == (pb.UNTYPED, 1.5)
    assert untyped.metric[0].timestamp_ms == 1700000000250


def test_name_filters_keep_whole_families(pb, registry):
    _ours(registry)
    body = protobuf.render(registry, ["dp_latency_seconds_count", "dp_inflight"])
    assert [f.name for f in decode(pb, body)] == ["dp_inflight", "dp_latency_seconds"]
    assert protobuf.render(registry, ["nothing_by_this_name"]) == b""


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        (PROMETHEUS_2_42_ACCEPT, True),
        (PROMETHEUS_2_42_ACCEPT_TEXT, False),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", True),
        (protobuf.CONTENT_TYPE, True),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", False),
        ("application/vnd.google.protobuf;proto=other.Message;encoding=delimited", False),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4,"
         "text/plain;q=0.5", False),
        (PROTO + ";q=x", False),
        (PROTO + ";q=0", False),
        ("*/*", False),
        (None, False),
        ("", False),
        # What the parser protobuf.py had of its own handled, now negotiation.choose's:
        ('application/vnd.google.protobuf;proto="io.prometheus.client.MetricFamily";encoding="delimited"',
         True),
        ("APPLICATION/VND.GOOGLE.PROTOBUF ; Proto=io.prometheus.client.MetricFamily ; Encoding=delimited",
         True),
        (PROTO + ";q=1.5", False),  # q out of range: the element is skipped
        (PROTO + ";q=nan", False),
        (PROTO + ";q=0.5,*/*;q=0.5", True),  # a wildcard loses a tie to a named type
        ("*/*;q=0.5," + PROTO + ";q=0.5", True),
        (PROTO + ";q=0.5,text/plain;version=0.0.4;q=0.5", True),  # a tie: the first named wins
        ("text/plain;version=0.0.4;q=0.5," + PROTO + ";q=0.5", False),
        (PROTO + ";q=0.9,application/openmetrics-text;version=1.0.0;q=1", False),
        ("application/json," + PROTO + ";q=0.1", True),  # a type we do not write is no competitor
        (",;," + PROTO + ";;junk;q=1", True),  # malformed elements and parameters are skipped
        (" " * 4090 + "," + PROTO, False),  # only a header's first 4096 characters are read
    ],
)  # fmt: skip
def test_protobuf_only_when_ranked_highest(accept, wanted):
    assert protobuf.wants_protobuf(accept) is wanted


def test_client_golang_reads_our_bytes_and_writes_the_same_families(pb, golang, registry):
    _ours(registry)
    prometheus_client.Summary("pc_size", "Sizes.", ["x"], registry=registry).labels("y").observe(2)
    prometheus_client.Info("pc_build", "Build.", registry=registry).info({"version": "1.2"})
    body = protobuf.render(registry)
    again = golang("roundtrip", body)
    assert decode(pb, again) == decode(pb, body)


def test_client_golang_text_matches_prometheus_clients(golang, registry):
    # The classic view of the same registry, through Go's decoder and text writer and through
    # prometheus_client's text writer, parsed alike: same samples (client_golang 1.14's text
    # has no _created series).
    _ours(registry)
    prometheus_client.Summary("pc_size", "Sizes.", registry=registry).observe(2)
    go_text = golang("text", protobuf.render(registry)).decode()

    def norm(k, v):  # le="1" (Go) and le="1.0" (Python) are the same bound
        return (k, float(v)) if k in ("le", "quantile") else (k, v)

    def samples(text):
        return sorted(
            (s.name, tuple(sorted(norm(k, v) for k, v in s.labels.items())), s.value)
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if not s.name.endswith("_created")
        )

    assert samples(go_text) == samples(prometheus_client.generate_latest(registry).decode())


def test_client_golang_reads_native_parts_equal_to_the_cells(pb, golang, registry):
    h = metrics.Histogram("dp_wide", "Wide.", ["k"], registry=registry, native=True, native_max_buckets=20)
    values = [10.0 ** ((i % 97) / 8 - 6) * (-1 if i % 5 == 0 else 1) for i in range(500)]
    for v in values:
        h.labels("a").observe(v)
    (fam,) = decode(pb, golang("roundtrip", protobuf.render(registry)))
    hist = fam.metric[0].histogram
    schema, zt, zero, pos, neg = h.labels("a").native.state()
    assert schema < 3
    assert (hist.schema, hist.zero_count) == (schema, zero)
    assert populated(hist.positive_span, hist.positive_delta) == pos
    assert populated(hist.negative_span, hist.negative_delta) == neg


@pytest.fixture
def on_the_default_registry():
    h = metrics.Histogram("dp_view_native_seconds", "Native via the view.", native=True)
    h.observe(0.25)
    yield h
    prometheus_client.REGISTRY.unregister(h)


def test_the_view_answers_protobuf_when_asked_gzip_and_names_included(pb, on_the_default_registry):
    client = Client()
    response = client.get("/metrics", HTTP_ACCEPT=PROMETHEUS_2_42_ACCEPT)
    assert response.status_code == 200
    assert response["Content-Type"] == protobuf.CONTENT_TYPE
    names = [f.name for f in decode(pb, response.content)]
    assert "dp_view_native_seconds" in names
    response = client.get(
        "/metrics", {"name[]": "dp_view_native_seconds_count"}, HTTP_ACCEPT=PROMETHEUS_2_42_ACCEPT,
        HTTP_ACCEPT_ENCODING="gzip",
    )  # fmt: skip
    assert response["Content-Encoding"] == "gzip"
    (fam,) = decode(pb, gzip.decompress(response.content))
    assert (fam.name, fam.metric[0].histogram.schema, fam.metric[0].histogram.sample_count) == (
        "dp_view_native_seconds", 3, 1,
    )  # fmt: skip
    text = client.get("/metrics", HTTP_ACCEPT=PROMETHEUS_2_42_ACCEPT_TEXT)
    assert text["Content-Type"].startswith("application/openmetrics-text")
    assert b"dp_view_native_seconds_bucket" in text.content


def test_the_port_exporter_answers_protobuf_too(pb, on_the_default_registry):
    from tests.test_exporters import LOOPBACK, free_ports

    (port,) = free_ports(1)
    exports.SetupPrometheusEndpointOnPort(port, LOOPBACK)
    try:
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{port}/metrics", headers={"Accept": PROMETHEUS_2_42_ACCEPT}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.headers["Content-Type"] == protobuf.CONTENT_TYPE
            families = {f.name: f for f in decode(pb, r.read())}
        assert families["dp_view_native_seconds"].metric[0].histogram.schema == 3
    finally:
        server = exports._servers.pop()
        server.httpd.shutdown()
        server.httpd.server_close()
        server.join(5)


def test_an_empty_native_part_with_no_zero_threshold_still_says_native(pb, registry):
    h = metrics.Histogram("dp_empty", "Empty.", registry=registry, native=True, native_zero_threshold=0)
    (fam,) = decode(pb, protobuf.render(registry))
    hist = fam.metric[0].histogram
    assert (hist.zero_threshold, hist.zero_count, len(hist.positive_span)) == (0.0, 0, 1)
    span = hist.positive_span[0]
    assert (span.offset, span.length, list(hist.positive_delta)) == (0, 0, [])
    h.observe(1.0)
    (fam,) = decode(pb, protobuf.render(registry))
    hist = fam.metric[0].histogram
    assert populated(hist.positive_span, hist.positive_delta) == [(0, 1)]


def _every_shape(registry):
    """Our three types in every shape the core's protobuf writer meets, awkward values included."""
    c = metrics.Counter("dp_shapes", 'Shapes. é\n"quoted"', ["view", "method"], registry=registry, unit="ops")
    for i, v in enumerate(["home", "é ünï ☃", "", 'q"\\\n', "x" * 300]):
        c.labels(v, "GET").inc(i * 1e9 + 0.25)
    metrics.Counter("dp_plain", "Unlabelled.", registry=registry).inc(7)
    metrics.Counter("dp_none", "No children.", ["a"], registry=registry)
    g = metrics.Gauge("dp_levels", "Levels.", ["k"], registry=registry)
    for i, v in enumerate([0.0, -0.0, -2.5, float("inf"), float("nan"), 1e300, 5e-324]):
        g.labels(str(i)).set(v)
    h = metrics.Histogram("dp_classic", "Classic.", ["view"], buckets=(0.1, 1.0, 10.0), registry=registry)
    for i in range(5):
        for v in (0.05, 0.5, 5.0, 50.0, 1e6)[: i + 1]:
            h.labels(f"v{i}").observe(v)
    h.labels("idle")
    n = metrics.Histogram(
        "dp_native", "Native.", ["view"], buckets=(0.1, 1.0), registry=registry, native=True
    )
    n.labels("a").observe(0.3)
    n.labels("b")
    # Native parts the writer encodes in C: several spans, gaps inside a span, both sides,
    # the zero bucket, counts and offsets of several varint bytes, classic counts above the
    # native count's single byte; with exemplars (the Python path) and with no zero threshold.
    wide = n.labels("wide")
    for i in range(300):
        wide.observe(1.07**i * 1e-6)
    for v in (0.0, -0.0, -1e-300, -3.0, -3.1, -2e5, 1e300, 1e-300, 2.0**-20, 2.0**10, 2.0**10):
        wide.observe(v)
    for _ in range(200):
        wide.observe(0.05)
    z = metrics.Histogram(
        "dp_native_zt", "No zero threshold.", ["view"], buckets=(1.0,), registry=registry, native=True,
        native_zero_threshold=0, native_max_buckets=20,
    )  # fmt: skip
    z.labels("empty")
    for i in range(100):
        z.labels("halved").observe(1.5**i)
    z.labels("halved").observe(0.0)
    ne = metrics.Histogram(
        "dp_native_exemplars", "Native and exemplars.", ["view"], buckets=(0.1, 1.0), registry=registry,
        native=True,
    )  # fmt: skip
    ne.labels("a").observe(0.5, {"trace_id": "abc"})
    ne.labels("b").observe(0.05)
    neg = metrics.Histogram("dp_negative", "No sum.", buckets=(-1.0, 0.0, 1.0), registry=registry)
    neg.observe(-0.5)
    e = metrics.Histogram("dp_exemplars", "Exemplars.", ["view"], buckets=(0.1, 1.0), registry=registry)
    e.labels("a").observe(0.5, {"trace_id": "abc"})
    e.labels("b").observe(0.05)
    return c, g, h


def test_the_compiled_writer_writes_what_the_python_encoder_writes(pb, registry, monkeypatch):
    # The core's render_protobuf against protobuf.py's own encoding of the same cells (what the
    # pure core always uses), byte for byte, and again after children are added and removed.
    c, g, h = _every_shape(registry)
    for step in range(3):
        with_core = protobuf.render(registry)
        with monkeypatch.context() as m:
            m.setattr(protobuf._expo, "render_protobuf", lambda *args: None)
            assert protobuf.render(registry) == with_core
        assert [f.name for f in decode(pb, with_core)][:3] == [
            "dp_shapes_ops_total",
            "dp_plain_total",
            "dp_none_total",
        ]
        if step == 0:
            c.labels("new", "POST").inc()
            g.labels("new").set(3)
            h.labels("new").observe(0.5)
        else:
            c.remove("home", "GET")
            g.clear()
            h.labels("v4").observe(2.0)
    prometheus_client.disable_created_metrics()
    try:
        with_core = protobuf.render(registry)
        with monkeypatch.context() as m:
            m.setattr(protobuf._expo, "render_protobuf", lambda *args: None)
            assert protobuf.render(registry) == with_core
    finally:
        prometheus_client.enable_created_metrics()


def test_every_protobuf_scrape_is_consistent_while_threads_observe(pb, registry):
    # The count and the buckets come from one read of the cell: a count read apart from the
    # buckets fell behind them under load (issue 28's scrapes under load).
    import sys
    import threading

    hist = metrics.Histogram("dp_stress_seconds", "S.", ["view"], buckets=(0.5, 1.0), registry=registry)
    child = hist.labels("hot")
    done = threading.Event()

    def write() -> None:
        observe = child.observe
        for i in range(30_000):
            observe((0.25, 0.75, 2.0)[i % 3])
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        writer = threading.Thread(target=write)
        writer.start()
        last = 0
        while not done.is_set() or not last:
            (family,) = decode(pb, protobuf.render(registry, None))
            h = family.metric[0].histogram
            cumulative = [b.cumulative_count for b in h.bucket]
            assert cumulative == sorted(cumulative)
            assert cumulative[-1] <= h.sample_count >= last
            last = h.sample_count
        writer.join()
    finally:
        sys.setswitchinterval(old)
    (family,) = decode(pb, protobuf.render(registry, None))
    assert family.metric[0].histogram.sample_count == 30_000
