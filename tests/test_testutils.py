"""The testutils helpers, on a private registry so the assertions are exact."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from django_prometheus import testutils as tu
from django_prometheus.metrics import Counter


@pytest.fixture
def setup():
    registry = CollectorRegistry()
    counter = Counter("things_total", "help", ["kind"], registry=registry)
    return registry, counter


def test_get_metric_and_vectors(setup):
    registry, counter = setup
    counter.labels("a").inc(2)
    counter.labels("b").inc()
    assert tu.get_metric("things_total", registry=registry, kind="a") == 2.0
    assert tu.get_metric("things_total", registry=registry, kind="zzz") is None
    assert sorted(tu.get_metrics_vector("things_total", registry=registry), key=lambda s: s[0]["kind"]) == [
        ({"kind": "a"}, 2.0),
        ({"kind": "b"}, 1.0),
    ]


def test_equal_and_not_equal(setup):
    registry, counter = setup
    counter.labels("a").inc(3)
    tu.assert_metric_equal(3, "things_total", registry=registry, kind="a")
    tu.assert_metric_not_equal(4, "things_total", registry=registry, kind="a")
    with pytest.raises(AssertionError, match="expected 4"):
        tu.assert_metric_equal(4, "things_total", registry=registry, kind="a")
    with pytest.raises(AssertionError):
        tu.assert_metric_not_equal(3, "things_total", registry=registry, kind="a")


def test_diffs_against_a_frozen_registry(setup):
    registry, counter = setup
    counter.labels("a").inc()
    frozen = tu.save_registry(registry)
    counter.labels("a").inc(2)
    counter.labels("new").inc()
    tu.assert_metric_diff(frozen, 2, "things_total", registry=registry, kind="a")
    tu.assert_metric_diff(frozen, 1, "things_total", registry=registry, kind="new")  # absent before: 0
    tu.assert_metric_no_diff(frozen, 5, "things_total", registry=registry, kind="a")
    tu.assert_metric_compare(
        frozen, lambda before, after: before < after, "things_total", registry=registry, kind="a"
    )
    with pytest.raises(AssertionError, match="expected a change of 1"):
        tu.assert_metric_diff(frozen, 1, "things_total", registry=registry, kind="a")
    with pytest.raises(AssertionError):
        tu.assert_metric_no_diff(frozen, 2, "things_total", registry=registry, kind="a")
    # The frozen copy does not move with the live registry.
    assert tu.get_metric_from_frozen_registry("things_total", frozen, kind="a") == 1.0


def test_labels_must_match_exactly(setup):
    registry, counter = setup
    counter.labels("a").inc()
    assert tu.get_metric("things_total", registry=registry) is None
    assert tu.get_metric_from_frozen_registry("things_total", tu.save_registry(registry)) is None


def test_formatting():
    # upstream's spelling: no space after the comma
    assert tu.format_labels({"a": "1", "b": "x"}) == '{a="1",b="x"}'
    assert tu.format_vector([({"a": "1"}, 2.0), ({"a": "2"}, 3.0)]) == '{a="1"} = 2.0\n{a="2"} = 3.0'


def test_a_series_missing_now_fails_every_diff_helper(setup):
    # A mistyped label value must fail the test, never pass as "changed by 0" (upstream's rule).
    registry, counter = setup
    counter.labels("a").inc()
    frozen = tu.save_registry(registry)
    with pytest.raises(AssertionError, match="was None after"):
        tu.assert_metric_diff(frozen, 0, "things_total", registry=registry, kind="typo")
    with pytest.raises(AssertionError, match="was None after"):
        tu.assert_metric_no_diff(frozen, 1, "things_total", registry=registry, kind="typo")
    with pytest.raises(AssertionError, match="was None after"):
        tu.assert_metric_compare(frozen, lambda b, a: True, "things_total", registry=registry, kind="typo")


def test_a_mistyped_view_fails_on_the_default_registry():
    # The exact call a user's test makes against the middleware's families.
    frozen = tu.save_registry()
    with pytest.raises(AssertionError, match="was None after"):
        tu.assert_metric_diff(
            frozen, 0, "django_http_responses_total_by_status_view_method_total",
            status="200", view="typo", method="GET",
        )  # fmt: skip


def test_compare_hands_the_predicate_none_for_a_series_born_since_the_save(setup):
    registry, counter = setup
    frozen = tu.save_registry(registry)
    counter.labels("late").inc(2)
    seen = []
    tu.assert_metric_compare(
        frozen, lambda before, after: seen.append((before, after)) is None, "things_total",
        registry=registry, kind="late",
    )  # fmt: skip
    assert seen == [(None, 2.0)]
    # The predicate's answer must be True itself, not merely truthy.
    with pytest.raises(AssertionError, match="predicate failed"):
        tu.assert_metric_compare(frozen, lambda b, a: 1, "things_total", registry=registry, kind="late")
