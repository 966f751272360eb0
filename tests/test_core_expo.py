"""The exporters' bytes (``text_format.render``) are ``generate_latest``'s, byte for byte, both cores."""

from __future__ import annotations

import math
import random
import sysconfig

import prometheus_client
import pytest
from django_prometheus._core import _expo
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import metrics as pc_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from django_prometheus import metrics, text_format

INF, NAN = float("inf"), float("nan")
UGLY = ["back\\slash", 'quo"te', "new\nline", "é ünï ☃", "", "a,b=c}{", "\\n literally"]


@pytest.fixture
def writer(twin):
    return twin.expo


@pytest.fixture(params=[True, False], ids=["created", "no-created"])
def created(request):
    before = pc_metrics._use_created
    if request.param:
        prometheus_client.enable_created_metrics()
    else:
        prometheus_client.disable_created_metrics()
    yield request.param
    pc_metrics._use_created = before


def mixed_registry() -> CollectorRegistry:
    """Ours and prometheus_client's own metrics interleaved, with every awkward value we can think of."""
    r = CollectorRegistry()
    c = metrics.Counter(
        "django_c_total", 'Help with "quotes", \\ and\nnewline.', ["view", "method"], registry=r
    )
    for i, v in enumerate(UGLY):
        c.labels(v, "GET").inc(i)
    c.labels("big", "GET").inc(1e20)
    c.labels("frac", "POST").inc(0.1 + 0.2)
    c.labels("million", "POST").inc(1234567)
    prometheus_client.Counter("user_total", "The user's own.", ["x"], registry=r).labels("1").inc()
    unlabelled = metrics.Counter(
        "django_plain_total", "Unlabelled.", namespace="ns", subsystem="sub", registry=r
    )
    unlabelled.inc(3)
    g = metrics.Gauge("django_g", "Gauges.", ["zz", "aa"], registry=r)
    for i, value in enumerate([NAN, INF, -INF, -0.0, 0.0, 1e-7, -1e10, 5e-324, 1.7976931348623157e308, 1e15]):
        g.labels(str(i), "x").set(value)
    prometheus_client.Gauge("user_gauge", "Theirs.", registry=r).set(2)
    h = metrics.Histogram("django_h", "Histogram.", ["method", "view", "a"], registry=r)
    for v in (0.003, 0.2, 7, 99, 1e10, NAN, INF):
        h.labels("m", "v", "x").observe(v)
    h.labels('q"', "\\", "\n").observe(0.5)
    metrics.Histogram("django_neg", "Negative buckets: no _sum.", registry=r, buckets=(-1, 0, 1)).observe(0.5)
    metrics.Histogram("django_zlabel", "A label after le.", ["zzz"], registry=r).labels("q").observe(0.5)
    metrics.Histogram("django_alabel", "A label before le.", ["a"], registry=r).labels("q").observe(0.5)
    metrics.Histogram("django_empty", "No children yet.", ["a"], registry=r)
    metrics.Counter("django_unit", "With a unit.", unit="seconds", registry=r).inc()
    prometheus_client.Histogram("user_h", "Theirs.", registry=r).observe(1)
    return r


@pytest.mark.parametrize("openmetrics_format", [False, True], ids=["text", "openmetrics"])
def test_render_is_generate_latest_byte_for_byte(openmetrics_format, created):
    r = mixed_registry()
    expected = (openmetrics.generate_latest if openmetrics_format else generate_latest)(r)
    assert text_format.render(r, openmetrics_format) == expected
    assert ("_created" in expected.decode()) is created


def test_the_default_registry_with_process_and_platform_collectors():
    c = metrics.Counter("django_expo_default_total", "In the default registry.", ["v"])
    try:
        c.labels("a").inc()

        # Every collector's bytes but process_* (CPU time moves between two calls).
        def stable(body):
            return [line for line in body.decode().splitlines() if not line.startswith("process_")]

        assert stable(text_format.render(prometheus_client.REGISTRY)) == stable(
            generate_latest(prometheus_client.REGISTRY)
        )
    finally:
        prometheus_client.REGISTRY.unregister(c)


@pytest.mark.parametrize("openmetrics_format", [False, True], ids=["text", "openmetrics"])
def test_both_writers_write_the_same_bytes_for_many_children(writer, openmetrics_format):
    r = CollectorRegistry()
    c = metrics.Counter("django_many_total", "c", ["view", "method"], registry=r)
    h = metrics.Histogram("django_many_h", "h", ["view", "method"], registry=r)
    rnd = random.Random(7)
    for i in range(2000):
        c.labels(f"view_{i}", rnd.choice(["GET", "POST"])).inc(rnd.randint(0, 10**9))
        h.labels(f"view_{i}", "GET").observe(rnd.random() * 20)
    for m, kind, les, mask in [
        (c, writer.COUNTER, (), writer.VALUE | writer.CREATED),
        (h, writer.HISTOGRAM, h._expo_les(), writer.BUCKET | writer.COUNT | writer.SUM | writer.CREATED),
    ]:
        one = CollectorRegistry()
        one.register(m)
        out = writer.render_family(
            kind, m._name, m._documentation, "", m._labelnames, m._family.children(), les, mask,
            openmetrics_format, False, text_format._EXP2,
        )  # fmt: skip
        expected = (openmetrics.generate_latest if openmetrics_format else generate_latest)(one)
        assert out == (expected[: -len(b"# EOF\n")] if openmetrics_format else expected)


FLOATS = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 1e6, 999999.0, 1234567.0, 1234567.5, 1e15, 1e15 + 1, 2.0**53,
          1e16, 1.5e16, 1e22, 1e-5, 1e-300, 5e-324, 1764618447.123456, -1e10, 123456789012.5, 9.999999e6,
          1.7976931348623157e308, INF, -INF, NAN, 1e10, 12345678901234.0]  # fmt: skip


def test_floats_are_written_as_prometheus_client_writes_them(writer):
    rnd = random.Random(3)
    values = (
        FLOATS
        + [rnd.uniform(-1e12, 1e12) for _ in range(2000)]
        + [float(rnd.randint(0, 10**17)) for _ in range(500)]
    )
    for v in values:
        assert writer.format_float(v, text_format._EXP2) == floatToGoString(v), v


def test_exponents_of_older_prometheus_client_releases(writer):
    # 0.20 wrote e+010 where 0.21 and later write e+10.
    assert writer.format_float(1e10, False) == "1e+010"
    assert writer.format_float(1e10, True) == "1e+10"
    assert writer.format_float(2.5e6, False) == writer.format_float(2.5e6, True) == "2.5e+06"


def samples_of(body: bytes) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): repr(s.value)  # (NaN == NaN as text)
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }


@pytest.mark.parametrize(
    "names",
    [
        ["django_c_total"],
        ["django_h_bucket", "user_total", "ns_sub_django_plain_total"],
        ["django_h_count", "django_h_sum", "django_g"],
        ["django_c_created", "user_h_bucket"],
        ["django_c"],  # a family name without its suffix selects no sample, as in prometheus_client
        ["nothing_like_it"],
    ],
)
def test_name_filter_selects_the_samples_prometheus_client_selects(names):
    r = mixed_registry()
    ours = text_format.render(r, names=names)
    theirs = generate_latest(r.restricted_registry(names))
    # prometheus_client's restricted registry visits collectors in set order; ours in registry order.
    assert sorted(ours.decode().splitlines()) == sorted(theirs.decode().splitlines())
    assert samples_of(ours) == samples_of(theirs)
    assert all(name in names for name, _ in samples_of(ours))


def test_collectors_without_describe_are_filtered_not_dropped():
    class NoDescribe:
        def collect(self):
            g = GaugeMetricFamily("custom_thing", "A custom collector.")
            g.add_metric([], 4)
            yield g

    r = CollectorRegistry()
    r.register(NoDescribe())
    assert generate_latest(r.restricted_registry(["custom_thing"])) == b""  # prometheus_client drops it
    assert samples_of(text_format.render(r, names=["custom_thing"])) == {("custom_thing", ()): "4.0"}
    assert text_format.render(r, names=["other"]) == b""


def test_target_info_comes_first_as_in_prometheus_client():
    r = CollectorRegistry(target_info={"env": "prod"})
    metrics.Counter("django_t_total", "t", registry=r).inc()
    assert text_format.render(r) == generate_latest(r)
    assert text_format.render(r, True) == openmetrics.generate_latest(r)


def test_a_subclass_that_changes_collect_is_rendered_through_collect():
    class Doubled(metrics.Counter):
        def collect(self):
            out = super().collect()
            for s in out[0].samples:
                s.value  # noqa: B018 - (reading is enough to show it ran)
            out[0].samples = [
                s._replace(value=s.value * 2) for s in out[0].samples if s.name.endswith("_total")
            ]
            return out

    r = CollectorRegistry()
    Doubled("django_d_total", "d", registry=r).inc(2)
    assert text_format.render(r) == generate_latest(r)
    assert samples_of(text_format.render(r))[("django_d_total", ())] == "4.0"


def test_set_function_gauges_are_rendered_through_collect():
    r = CollectorRegistry()
    g = metrics.Gauge("django_fn", "f", registry=r)
    g.set_function(lambda: 42)
    assert text_format.render(r) == generate_latest(r)
    assert b"django_fn 42.0" in text_format.render(r)


def test_nul_and_cr_in_label_values_become_the_replacement_character(created):
    r = CollectorRegistry()
    c = metrics.Counter("django_nul_total", "n", ["v"], registry=r)
    h = metrics.Histogram("django_nul_h", "n", ["v"], registry=r)
    c.labels("a\x00b\rc").inc()
    c.labels("a\ufffdb\ufffdc").inc()  # the same child: one series, not two with one name
    h.labels("\r").observe(1)
    for fmt in (False, True):
        body = text_format.render(r, fmt)
        assert b"\x00" not in body and b"\r" not in body
        assert body == (openmetrics.generate_latest if fmt else generate_latest)(r)
    assert samples_of(text_format.render(r))[("django_nul_total", (("v", "a\ufffdb\ufffdc"),))] == "2.0"
    assert len(c._family) == 1
    c.remove("a\x00b\rc")
    assert len(c._family) == 0


def test_the_dispatcher_follows_the_cells_choice():
    from django_prometheus._core import _cells

    assert _expo.USE_EXTENSIONS == _cells.USE_EXTENSIONS
    assert math.isnan(float(_expo._impl.format_float(NAN)))


@pytest.mark.parametrize("openmetrics_format", [False, True], ids=["text", "openmetrics"])
def test_scrapes_follow_children_added_removed_and_changed(openmetrics_format, created):
    # The writer keeps what it prepared for a family's children between scrapes: every scrape
    # must still be generate_latest's bytes as children come, go and count.
    r = CollectorRegistry()
    c = metrics.Counter("django_life_total", "c", ["view"], registry=r)
    g = metrics.Gauge("django_life_g", "g", ["view"], registry=r)
    h = metrics.Histogram("django_life_h", "h", ["view"], registry=r, buckets=(0.1, 1.0))
    gen = openmetrics.generate_latest if openmetrics_format else generate_latest
    steps = [
        lambda: None,
        lambda: (c.labels("a").inc(), g.labels("a").set(2), h.labels("a").observe(0.5)),
        lambda: (c.labels("a").inc(5), g.labels("a").dec(), h.labels("a").observe(0.05)),
        lambda: (c.labels("b").inc(), g.labels("b").set(-1), h.labels("b").observe(3)),
        lambda: (c.remove("a"), g.remove("b"), h.remove("a")),
        lambda: (c.labels("a").inc(2), g.labels("b").set(9), h.labels("a").observe(9)),  # created anew
        lambda: (c.clear(), g.clear(), h.clear()),
        lambda: (c.labels("z\n").inc(), g.labels('"').set(1), h.labels("\\").observe(1)),
    ]
    for step in steps:
        step()
        assert text_format.render(r, openmetrics_format) == gen(r)
        assert text_format.render(r, not openmetrics_format) == (
            generate_latest if openmetrics_format else openmetrics.generate_latest
        )(r)


def test_a_family_rendered_with_both_exponent_styles(writer):
    # The created texts follow the exponent style of each scrape.
    c = metrics.Counter("django_exp_total", "c", ["v"], registry=CollectorRegistry())
    c.labels("a").inc(1e10)
    args = (writer.COUNTER, c._name, "c", "", c._labelnames, c._family, (), writer.VALUE)
    old = writer.render_family(*args, False, False, False)
    new = writer.render_family(*args, False, False, True)
    assert b"1e+010" in old and b"1e+10" in new
    assert writer.render_family(*args, False, False, False) == old


# Bytes a labelled child may cost, everything the process keeps for it after a text and a
# protobuf scrape (label strings excluded): tracemalloc's count is deterministic for a given
# interpreter, and these bounds leave room for other CPython versions' object sizes. Measured
# on 3.12 with 2,000 children: compiled counter 81, histogram 241 (the family's own table: no
# label tuple, no dict entry; the writer keeps nothing between scrapes);
# pure 285 and 907 (its protobuf writer caches a histogram child's encoded labels: 222).
# A free-threaded build's object header is 16 bytes larger (3.13t: pure histogram 963): 32
# more there, for the cell and the label tuple (compiled: the cell, and the family's replaced
# tables, kept until it dies).
# `python -m benchmarks.bench_scrape --memory` says where they go.
_FT_HEADERS = 32 if sysconfig.get_config_var("Py_GIL_DISABLED") else 0
CHILD_BYTES = {
    compiled: {kind: n + _FT_HEADERS for kind, n in bounds.items()}
    for compiled, bounds in {
        True: {"counter": 90, "histogram": 250},
        False: {"counter": 300, "histogram": 950},
    }.items()
}
WRITER_BYTES = {True: {"counter": 2, "histogram": 2}, False: {"counter": 8, "histogram": 300}}


@pytest.mark.parametrize("kind", ["counter", "histogram"])
def test_memory_per_child_stays_bounded_across_scrapes(kind):
    import gc
    import tracemalloc

    from django_prometheus import protobuf

    n = 2_000
    values = [(f"app.views.view_{i}", "GET") for i in range(n)]
    r = CollectorRegistry()
    if kind == "counter":
        m = metrics.Counter("django_mem_total", "m", ["view", "method"], registry=r)
    else:
        m = metrics.Histogram(
            "django_mem_seconds", "m", ["view", "method"], registry=r, buckets=[0.1 * i for i in range(1, 15)]
        )
    m.labels("warm", "GET")
    text_format.render(r)
    protobuf.render(r)

    def traced() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        start = traced()
        for v in values:
            m.labels(*v).inc() if kind == "counter" else m.labels(*v).observe(0.3)
        made = traced()
        for _ in range(3):  # later scrapes reuse what the first kept, and keep nothing more
            text_format.render(r)
            protobuf.render(r)
        end = traced()
    finally:
        tracemalloc.stop()
    compiled = _expo.USE_EXTENSIONS
    assert (end - made) / n <= WRITER_BYTES[compiled][kind]
    assert (end - start) / n <= CHILD_BYTES[compiled][kind]
