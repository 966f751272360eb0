"""Our metric classes expose exactly what prometheus_client's own would, over core cells."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import prometheus_client
import pytest
from django_prometheus._core import _cells
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from django_prometheus import metrics


@pytest.fixture
def registry():
    return CollectorRegistry()


def exposition_without_created(registry):
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


@pytest.mark.parametrize(
    ("ours", "theirs", "act"),
    [
        (metrics.Counter, prometheus_client.Counter, lambda m: m.inc(3)),
        (metrics.Gauge, prometheus_client.Gauge, lambda m: (m.inc(3), m.dec(0.5))),
        (
            metrics.Histogram,
            prometheus_client.Histogram,
            lambda m: [m.observe(v) for v in (0.003, 0.2, 7, 99)],
        ),
    ],
    ids=["counter", "gauge", "histogram"],
)
@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
def test_exposition_is_identical_to_prometheus_client(ours, theirs, act, labelled):
    outputs = []
    for cls in (ours, theirs):
        registry = CollectorRegistry()
        kwargs = {"labelnames": ["view", "method"]} if labelled else {}
        m = cls("django_thing_total" if cls._type == "counter" else "django_thing", "Some help.",
                namespace="ns", registry=registry, **kwargs)  # fmt: skip
        for target in [m.labels("a", "GET"), m.labels(view="b", method="POST")] if labelled else [m]:
            act(target)
        outputs.append(exposition_without_created(registry))
    assert outputs[0] == outputs[1]


def test_metric_objects_are_prometheus_client_metrics(registry):
    c = metrics.Counter("django_x_total", "help", ["backend"], registry=registry)
    assert isinstance(c, MetricWrapperBase)
    assert isinstance(c, prometheus_client.Counter)
    assert c._name == "django_x"  # prometheus_client strips _total; users' label_metric overrides read this
    assert c._labelnames == ("backend",)
    registry.unregister(c)
    assert registry.get_sample_value("django_x_total", {"backend": "a"}) is None
    # Once unregistered the name is free again.
    metrics.Counter("django_x_total", "help", ["backend"], registry=registry)


def test_duplicate_registration_is_refused_like_prometheus_client(registry):
    metrics.Counter("dup", "help", registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        metrics.Counter("dup", "help", registry=registry)


def test_labels_returns_the_same_cell_for_args_and_kwargs(registry):
    h = metrics.Histogram("lat", "help", ["view", "method"], buckets=(0.1, 1), registry=registry)
    cell = h.labels("v", "GET")
    assert h.labels(method="GET", view="v") is cell
    assert isinstance(cell, _cells.Histogram)
    cell.observe(0.5)
    assert registry.get_sample_value("lat_bucket", {"view": "v", "method": "GET", "le": "1.0"}) == 1.0
    assert registry.get_sample_value("lat_count", {"view": "v", "method": "GET"}) == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.labels("only-one"),
        lambda m: m.labels(a="1", c="2"),
        lambda m: m.labels("1", b="2"),
        lambda m: m.inc(),  # a labelled metric has no value of its own
    ],
)
def test_bad_label_use_raises_value_error(registry, call):
    c = metrics.Counter("c", "help", ["a", "b"], registry=registry)
    with pytest.raises(ValueError):
        call(c)


def test_unlabelled_metric_refuses_labels(registry):
    with pytest.raises(ValueError, match="No label names"):
        metrics.Counter("c", "help", registry=registry).labels("x")


def test_label_values_are_stringified(registry):
    c = metrics.Counter("c", "help", ["status"], registry=registry)
    c.labels(200).inc()
    assert registry.get_sample_value("c_total", {"status": "200"}) == 1.0


def test_child_value_is_readable_like_prometheus_client(registry):
    c = metrics.Counter("c", "help", ["a"], registry=registry)
    c.labels("x").inc(2)
    assert c.labels("x")._value.get() == 2.0
    u = metrics.Counter("u", "help", registry=registry)
    u.inc()
    assert u._value.get() == 1.0


def test_remove_and_clear(registry):
    c = metrics.Counter("c", "help", ["a"], registry=registry)
    c.labels("x").inc()
    c.labels("y").inc()
    assert set(c._metrics) == {("x",), ("y",)}
    c.remove("x")
    assert registry.get_sample_value("c_total", {"a": "x"}) is None
    assert registry.get_sample_value("c_total", {"a": "y"}) == 1.0
    c.clear()
    assert registry.get_sample_value("c_total", {"a": "y"}) is None


def test_created_samples_follow_prometheus_clients_switch(registry):
    c = metrics.Counter("c", "help", ["a"], registry=registry)
    h = metrics.Histogram("h", "help", registry=registry)
    c.labels("x").inc()
    h.observe(1)
    assert registry.get_sample_value("c_created", {"a": "x"}) == c.labels("x").created
    assert registry.get_sample_value("h_created", {}) is not None
    prometheus_client.disable_created_metrics()
    try:
        text = generate_latest(registry).decode()
    finally:
        prometheus_client.enable_created_metrics()
    assert "_created" not in text
    assert 'c_total{a="x"} 1.0' in text


def test_timer_and_inprogress_helpers_work_on_unlabelled_and_labelled(registry):
    h = metrics.Histogram("h", "help", ["a"], registry=registry)
    with h.labels("x").time():
        pass
    g = metrics.Gauge("g", "help", registry=registry)
    with g.track_inprogress():
        assert g._value.get() == 1.0
    assert registry.get_sample_value("h_count", {"a": "x"}) == 1.0
    assert registry.get_sample_value("g", {}) == 0.0


def test_gauge_set_function_is_honoured(registry):
    g = metrics.Gauge("g", "help", registry=registry)
    g.set_function(lambda: 42)
    assert registry.get_sample_value("g", {}) == 42.0


def test_disable_created_series_environment_variable_is_honoured():
    # prometheus_client reads PROMETHEUS_DISABLE_CREATED_SERIES at import: check in a fresh process.
    code = textwrap.dedent(
        """
        from prometheus_client import CollectorRegistry, generate_latest
        from django_prometheus.metrics import Counter
        r = CollectorRegistry()
        Counter("c", "help", ["a"], registry=r).labels("x").inc()
        print(generate_latest(r).decode())
        """
    )
    import os

    env = {**os.environ, "PROMETHEUS_DISABLE_CREATED_SERIES": "True"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert 'c_total{a="x"} 1.0' in out.stdout
    assert "_created" not in out.stdout


def test_the_metric_classes_docstring_examples_hold():
    import doctest

    from django_prometheus import metrics

    result = doctest.testmod(metrics)
    assert result.attempted >= 15 and result.failed == 0, result
