"""Exemplars (issue 13.6): the cells keep them, both writers render them, only in OpenMetrics.

The cells and writers run side by side, compiled and pure; the spans come from a
real OpenTelemetry SDK tracer provider.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time

import prometheus_client
import pytest
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from django_prometheus import text_format
from django_prometheus.http import exemplars
from django_prometheus.metrics import Histogram
from tests.servers import ROOT

IDS = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
SAMPLED = TracerProvider(sampler=ALWAYS_ON).get_tracer("tests")
UNSAMPLED = TracerProvider(sampler=ALWAYS_OFF).get_tracer("tests")


@pytest.fixture
def core(twin):
    return twin.cells


def _ids(span) -> dict[str, str]:
    ctx = span.get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


# --- The cells ---------------------------------------------------------------------------


def test_a_histogram_keeps_no_exemplar_until_asked(core):
    h = core.Histogram([1.0, 2.0])
    h.observe(0.5)
    assert h.exemplars() is None


def test_the_capture_marks_the_bucket_of_each_observation_latest_wins(core):
    h = core.Histogram([1.0, 2.0])
    labels = iter([{"trace_id": "a"}, {"trace_id": "b"}, None, {"trace_id": "c"}])
    h.set_exemplar_capture(lambda: next(labels))
    before = time.time()
    h.observe(0.5)
    h.observe(0.7)  # same bucket: the latest wins
    h.observe(1.5)  # the capture says "no span": nothing kept
    h.observe(5.0)
    ex = h.exemplars()
    assert [e and (e[0], e[1]) for e in ex] == [({"trace_id": "b"}, 0.7), None, ({"trace_id": "c"}, 5.0)]
    assert before <= ex[0][2] <= time.time()
    assert h.buckets() == [2.0, 3.0, 4.0]  # counting unchanged


def test_a_failing_capture_never_breaks_an_observation(core):
    h = core.Histogram([1.0])

    def boom():
        raise RuntimeError("tracing is broken")

    h.set_exemplar_capture(boom)
    h.observe(0.5)
    h.set_exemplar_capture(lambda: ["not", "a", "dict"])
    h.observe(0.5)
    assert h.buckets() == [2.0, 2.0]
    assert h.exemplars() is None


def test_nan_is_counted_in_the_sum_only_and_gets_no_exemplar(core):
    h = core.Histogram([1.0])
    h.set_exemplar_capture(lambda: {"trace_id": "a"})
    h.observe(float("nan"))
    assert h.exemplars() is None
    assert math.isnan(h.sum)


def test_stopping_the_capture_forgets_the_exemplars(core):
    h = core.Histogram([1.0])
    h.set_exemplar_capture(lambda: {"trace_id": "a"})
    h.observe(0.5)
    assert h.exemplars()[0] is not None
    h.set_exemplar_capture(None)
    assert h.exemplars() is None
    h.observe(0.5)
    assert h.exemplars() is None
    with pytest.raises(TypeError):
        h.set_exemplar_capture("not callable")


def test_an_explicit_exemplar_is_kept_as_prometheus_client_keeps_it(core):
    h = core.Histogram([1.0, 2.0])
    h.observe(1.5, {"trace_id": "x" * 60})
    assert h.exemplars()[1][:2] == ({"trace_id": "x" * 60}, 1.5)


@pytest.mark.parametrize(
    "bad",
    [{"trace_id": "x" * 121}, {"bad-name": "1"}, {"__reserved": "1"}, {"trace_id": 5}],
    ids=["over-128-runes", "invalid-name", "reserved-name", "not-a-string"],
)
def test_an_invalid_explicit_exemplar_is_refused_and_nothing_counted(core, bad):
    h = core.Histogram([1.0])
    with pytest.raises(ValueError):
        h.observe(0.5, bad)
    assert h.buckets() == [0.0, 0.0]
    assert h.exemplars() is None


def test_the_128_rune_limit_counts_characters_not_bytes(core):
    h = core.Histogram([1.0])
    h.observe(0.5, {"trace_id": "é" * 120})  # 8 + 120 = 128 runes, 248 bytes
    assert h.exemplars()[0][0] == {"trace_id": "é" * 120}


# --- The writers --------------------------------------------------------------------------


def _registry_with(capture=None, labelnames=("view",)):
    registry = CollectorRegistry()
    h = Histogram("req_seconds", "Latency.", list(labelnames), buckets=(0.1, 1.0), registry=registry)
    h.set_exemplar_capture(capture)
    return registry, h


def test_both_writers_render_exemplars_byte_for_byte_as_prometheus_client(twin):
    ids = iter([{"trace_id": "ab" * 16, "span_id": "cd" * 8}, None, {"span_id": 'q"\\\n', "trace_id": "é"}])
    registry, h = _registry_with(lambda: next(ids))
    h.labels("a").observe(0.05)
    h.labels("a").observe(0.5)
    h.labels("b").observe(7.0)
    generic = om_exposition.generate_latest(registry)
    assert b' # {span_id="cdcdcdcdcdcdcdcd",trace_id="abababababababababababababababab"} 0.05 ' in generic
    assert b'# {span_id="q\\"\\\\\\n",trace_id="\xc3\xa9"} 7.0 ' in generic
    module = twin.expo
    les = ("0.1", "1.0", "+Inf")
    children = h._family.children()
    for openmetrics in (True, False):
        ours = module.render_family(
            module.HISTOGRAM, "req_seconds", "Latency.", "", ("view",), children, les,
            module.BUCKET | module.COUNT | module.SUM | module.CREATED, openmetrics, False,
        )  # fmt: skip
        assert (b" # {" in ours) is openmetrics
    assert text_format.render(registry, openmetrics_format=True) == generic
    # The text format has no syntax for exemplars, in prometheus_client as here.
    assert text_format.render(registry) == prometheus_client.generate_latest(registry)
    assert b"trace_id" not in text_format.render(registry)


def test_the_compiled_and_pure_writers_agree_on_exemplars(compiled_twin, pure_twin):
    registry, h = _registry_with(lambda: dict(IDS))
    for v in (0.01, 0.2, 3.0, 0.3):
        h.labels("x").observe(v)
    children = h._family.children()
    outs = []
    for module in (compiled_twin.expo, pure_twin.expo):
        outs.append(
            module.render_family(
                module.HISTOGRAM,
                "req_seconds",
                "Latency.",
                "",
                ("view",),
                children,
                ("0.1", "1.0", "+Inf"),
                module.BUCKET | module.COUNT | module.SUM,
                True,
                False,
            )  # fmt: skip
        )
    assert outs[0] == outs[1]
    assert outs[0].count(b" # {") == 3


def test_openmetrics_parser_reads_our_exemplars_back():
    registry, h = _registry_with(lambda: dict(IDS))
    h.labels("x").observe(0.2)
    text = text_format.render(registry, openmetrics_format=True).decode()
    [family] = [f for f in om_parse(text) if f.name == "req_seconds"]
    [bucket] = [s for s in family.samples if s.name == "req_seconds_bucket" and s.labels["le"] == "1.0"]
    assert bucket.exemplar.labels == {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
    }
    assert bucket.exemplar.value == 0.2
    assert abs(float(bucket.exemplar.timestamp) - time.time()) < 60
    others = [s for s in family.samples if s.exemplar is not None]
    assert others == [bucket]


def test_a_filtered_scrape_keeps_the_exemplars_of_the_buckets_it_asks_for():
    registry, h = _registry_with(lambda: {"trace_id": "t"})
    h.labels("x").observe(0.2)
    ours = text_format.render(registry, openmetrics_format=True, names=["req_seconds_bucket"])
    generic = om_exposition.generate_latest(registry.restricted_registry(["req_seconds_bucket"]))
    assert ours == generic
    assert b'# {trace_id="t"} 0.2 ' in ours


def test_an_unlabelled_histogram_is_marked_too():
    registry, h = _registry_with(lambda: {"trace_id": "t"}, labelnames=())
    h.observe(0.2)
    assert b'le="1.0"} 1.0 # {trace_id="t"} 0.2 ' in text_format.render(registry, openmetrics_format=True)


# --- apply(): the setting, OpenTelemetry's current span ------------------------------------------


def _latency(registry):
    return Histogram("lat_seconds", "Latency.", ["view"], buckets=(0.1, 1.0), registry=registry)


def test_apply_does_nothing_when_the_setting_is_off():
    h = _latency(CollectorRegistry())
    with override_settings(PROMETHEUS_EXEMPLARS=False):
        exemplars.apply(h)
    with SAMPLED.start_as_current_span("request"):
        h.labels("v").observe(0.2)
    assert h.labels("v").exemplars() is None


def test_apply_marks_present_and_future_children_with_the_current_recording_span():
    h = _latency(CollectorRegistry())
    early = h.labels("early")
    with override_settings(PROMETHEUS_EXEMPLARS=True):
        exemplars.apply(h)
    with SAMPLED.start_as_current_span("request") as span:
        early.observe(0.2)
        h.labels("late").observe(0.05)
    assert early.exemplars()[1][0] == _ids(span)
    assert h.labels("late").exemplars()[0][0] == _ids(span)


def test_each_span_gives_its_own_ids_one_after_another():
    h = _latency(CollectorRegistry())
    with override_settings(PROMETHEUS_EXEMPLARS=True):
        exemplars.apply(h)
    cell = h.labels("v")
    for _ in range(3):
        with SAMPLED.start_as_current_span("request") as span:
            cell.observe(0.2)
            cell.observe(0.05)
        assert [e[0] for e in cell.exemplars()[:2]] == [_ids(span), _ids(span)]


def test_no_exemplar_without_a_span_or_with_a_non_recording_one():
    h = _latency(CollectorRegistry())
    with override_settings(PROMETHEUS_EXEMPLARS=True):
        exemplars.apply(h)
    h.labels("v").observe(0.2)  # no span
    with UNSAMPLED.start_as_current_span("request") as span:
        assert not span.is_recording()
        h.labels("v").observe(0.2)
    assert h.labels("v").exemplars() is None
    assert h.labels("v").buckets() == [0.0, 2.0, 2.0]


def test_apply_ignores_a_metric_that_is_not_ours():
    theirs = prometheus_client.Histogram("theirs_seconds", "Not ours.", registry=CollectorRegistry())
    with override_settings(PROMETHEUS_EXEMPLARS=True):
        exemplars.apply(theirs)  # no error, nothing marked
    theirs.observe(0.1)


def test_the_exemplar_ids_are_well_within_openmetrics_128_runes():
    fn = exemplars.capture()
    with SAMPLED.start_as_current_span("request"):
        labels = fn()
    assert set(labels) == {"trace_id", "span_id"}
    assert len(labels["trace_id"]) == 32 and len(labels["span_id"]) == 16
    assert sum(len(k) + len(v) for k, v in labels.items()) <= 128


_SUBPROCESS = """
import sys
{block}
import django
from django.conf import settings
settings.configure(PROMETHEUS_EXEMPLARS={on}, INSTALLED_APPS=[], ROOT_URLCONF=[])
django.setup()
from django_prometheus.http.metrics import Metrics
m = Metrics.get_instance()
m.requests_latency_before.observe(0.1)
print("otel imported:", "opentelemetry" in sys.modules)
print("marked:", m.requests_latency_before._cell.exemplars() is not None
      or m.requests_latency_before._exemplar_capture is not None)
"""

_BLOCK_OTEL = """
class _NoOtel:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError("blocked: opentelemetry is absent")
sys.meta_path.insert(0, _NoOtel())
"""


@pytest.mark.parametrize(
    ("on", "block", "imported", "marked"),
    [(False, "", False, False), (True, _BLOCK_OTEL, False, False), (True, "", True, True)],
    ids=["off", "on-without-opentelemetry", "on"],
)
def test_nothing_is_imported_or_marked_when_off_or_without_opentelemetry(on, block, imported, marked):
    code = _SUBPROCESS.format(block=block, on=on)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert f"otel imported: {imported}" in out.stdout, out.stdout + out.stderr
    assert f"marked: {marked}" in out.stdout, out.stdout + out.stderr
    if on and block:  # said once, though both latency histograms asked
        assert out.stderr.count("opentelemetry-api is not installed") == 1, out.stderr
