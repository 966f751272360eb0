"""Assertions and helpers for testing code that exports metrics.

Every function matches samples by their exposed name (``x_total``, ``x_bucket``…)
and an exact label dict, in ``registry`` (the default registry unless given).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Metric

Labels = dict[str, str]
Vector = list[tuple[Labels, float]]
FrozenRegistry = list[Metric]


def format_labels(labels: Labels) -> str:
    """``{a="1",b="2"}``, as in the exposition format."""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def format_vector(vector: Vector) -> str:
    """One ``{labels} = value`` line per sample."""
    return "\n".join(f"{format_labels(labels)} = {value}" for labels, value in vector)


def save_registry(registry: CollectorRegistry = REGISTRY) -> FrozenRegistry:
    """A frozen copy of every metric in ``registry``, to compare against later."""
    return copy.deepcopy(list(registry.collect()))


def get_metric(metric_name: str, registry: CollectorRegistry = REGISTRY, **labels: str) -> float | None:
    """The value of the sample ``metric_name{labels}``, or None if there is none."""
    return registry.get_sample_value(metric_name, labels)


def get_metric_vector_from_frozen_registry(metric_name: str, frozen_registry: FrozenRegistry) -> Vector:
    """Every ``(labels, value)`` of the samples named ``metric_name``."""
    return [
        (sample.labels, sample.value)
        for metric in frozen_registry
        for sample in metric.samples
        if sample.name == metric_name
    ]


def get_metrics_vector(metric_name: str, registry: CollectorRegistry = REGISTRY) -> Vector:
    """Every ``(labels, value)`` of the samples named ``metric_name``, now."""
    return get_metric_vector_from_frozen_registry(metric_name, list(registry.collect()))


def get_metric_from_frozen_registry(
    metric_name: str, frozen_registry: FrozenRegistry, **labels: str
) -> float | None:
    """The value of ``metric_name{labels}`` in a frozen registry, or None."""
    for sample_labels, value in get_metric_vector_from_frozen_registry(metric_name, frozen_registry):
        if sample_labels == labels:
            return value
    return None


def _describe(metric_name: str, labels: Labels, registry: CollectorRegistry) -> str:
    samples = format_vector(get_metrics_vector(metric_name, registry))
    return f"{metric_name}{format_labels(labels)}; all samples of it:\n{samples}"


def assert_metric_equal(
    expected_value: float, metric_name: str, registry: CollectorRegistry = REGISTRY, **labels: str
) -> None:
    """``metric_name{labels}`` equals ``expected_value``."""
    value = get_metric(metric_name, registry=registry, **labels)
    assert value == expected_value, (
        f"{_describe(metric_name, labels, registry)}\nexpected {expected_value}, got {value}"
    )


def assert_metric_not_equal(
    expected_value: float, metric_name: str, registry: CollectorRegistry = REGISTRY, **labels: str
) -> None:
    """``metric_name{labels}`` differs from ``expected_value``."""
    value = get_metric(metric_name, registry=registry, **labels)
    assert value != expected_value, (
        f"{_describe(metric_name, labels, registry)}\nexpected anything but {expected_value}"
    )


def _before_after(
    frozen_registry: FrozenRegistry, metric_name: str, registry: CollectorRegistry, labels: Labels
) -> tuple[float | None, float]:
    """The sample's value then (None if it did not exist yet) and now, which must exist.

    As upstream: a series missing *now* fails the assertion, so a mistyped metric
    or label name can never pass as "changed by 0".
    """
    before = get_metric_from_frozen_registry(metric_name, frozen_registry, **labels)
    after = get_metric(metric_name, registry=registry, **labels)
    assert after is not None, (
        f"{_describe(metric_name, labels, registry)}\n"
        f"{metric_name}{format_labels(labels)} was None after (before: {before})"
    )
    return before, after


def assert_metric_diff(
    frozen_registry: FrozenRegistry,
    expected_diff: float,
    metric_name: str,
    registry: CollectorRegistry = REGISTRY,
    **labels: str,
) -> None:
    """``metric_name{labels}`` grew by exactly ``expected_diff`` since ``frozen_registry`` was saved."""
    before, after = _before_after(frozen_registry, metric_name, registry, labels)
    diff = after - (before or 0.0)  # a series born since the save had counted nothing before
    assert diff == expected_diff, (
        f"{_describe(metric_name, labels, registry)}\n"
        f"expected a change of {expected_diff}, got {diff} ({before} -> {after})"
    )


def assert_metric_no_diff(
    frozen_registry: FrozenRegistry,
    expected_diff: float,
    metric_name: str,
    registry: CollectorRegistry = REGISTRY,
    **labels: str,
) -> None:
    """``metric_name{labels}`` did not grow by ``expected_diff`` since ``frozen_registry`` was saved."""
    before, after = _before_after(frozen_registry, metric_name, registry, labels)
    diff = after - (before or 0.0)
    assert diff != expected_diff, (
        f"{_describe(metric_name, labels, registry)}\n"
        f"expected any change but {expected_diff} ({before} -> {after})"
    )


def assert_metric_compare(
    frozen_registry: FrozenRegistry,
    predicate: Callable[[Any, Any], bool],
    metric_name: str,
    registry: CollectorRegistry = REGISTRY,
    **labels: str,
) -> None:
    """``predicate(value_then, value_now) is True``; the sample must exist now (then may be None)."""
    before, after = _before_after(frozen_registry, metric_name, registry, labels)
    assert predicate(before, after) is True, (
        f"{_describe(metric_name, labels, registry)}\npredicate failed on ({before}, {after})"
    )
