"""Native histogram settings: read and checked in one place.

``PROMETHEUS_NATIVE_HISTOGRAMS`` (default False) gives every histogram family of
ours a native part next to its classic buckets (shown by the protobuf exposition
only); ``PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR`` (1.1, schema 3),
``PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD`` (2**-128, client_golang's default)
and ``PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS`` (160; 0 means no limit) shape it.
A histogram reads them when it is created (the module-level DB and cache families:
at import, as ``PROMETHEUS_LATENCY_BUCKETS``). A bad value is an
``ImproperlyConfigured`` naming the setting, also reported by ``manage.py check``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from django_prometheus import conf
from django_prometheus._core import _native

__all__ = ["DEFAULTS", "NativeConfig", "configure", "enabled", "from_settings"]

#: Every native histogram setting with its default (rows of ``conf.SETTINGS``, which checks them).
DEFAULTS: dict[str, Any] = {
    name: conf.SETTINGS[name].default
    for name in (
        "PROMETHEUS_NATIVE_HISTOGRAMS",
        "PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR",
        "PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD",
        "PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS",
    )
}


class NativeConfig(NamedTuple):
    """What a native part is made from: ``NativeHistogram(schema, zero_threshold, max_buckets)``."""

    schema: int
    zero_threshold: float
    max_buckets: int

    def new(self) -> Any:
        return _native.NativeHistogram(self.schema, self.zero_threshold, self.max_buckets)


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for the setting (or argument) ``name``, or None."""
    if name.endswith("BUCKET_FACTOR") or name == "native_bucket_factor":
        if not _number(value) or not value > 1:
            return "must be a number greater than 1 (the growth factor from one bucket to the next, e.g. 1.1)"
    elif name.endswith("ZERO_THRESHOLD") or name == "native_zero_threshold":
        if not _number(value) or value < 0:
            return "must be a finite number >= 0 (observations with abs(v) <= it count as zero)"
    elif name.endswith("MAX_BUCKETS") or name == "native_max_buckets":
        if type(value) is not int or not 0 <= value <= 0x7FFFFFFF:
            return "must be a whole number >= 0 (0: no limit)"
    elif type(value) is not bool:
        return "must be True or False"
    return None


def _checked(name: str, value: Any, error: type[Exception]) -> Any:
    problem = _problem(name, value)
    if problem is not None:
        raise error(f"django_prometheus: {name} = {value!r} {problem}.")
    return value


def _read(name: str) -> Any:
    return conf.get(name)  # the table's rule: an ImproperlyConfigured naming the setting


def enabled() -> bool:
    """``PROMETHEUS_NATIVE_HISTOGRAMS``."""
    return bool(_read("PROMETHEUS_NATIVE_HISTOGRAMS"))


def from_settings() -> NativeConfig:
    """The native part the settings describe (whether or not it is switched on)."""
    return configure(None, None, None)


def configure(bucket_factor: Any, zero_threshold: Any, max_buckets: Any) -> NativeConfig:
    """A ``NativeConfig`` from ``Histogram(native_…=)`` arguments, the settings filling in None.

    A bad argument is a ValueError naming it; a bad setting an ImproperlyConfigured naming it.
    """
    factor = (
        _read("PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR")
        if bucket_factor is None
        else _checked("native_bucket_factor", bucket_factor, ValueError)
    )
    zero = (
        _read("PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD")
        if zero_threshold is None
        else _checked("native_zero_threshold", zero_threshold, ValueError)
    )
    limit = (
        _read("PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS")
        if max_buckets is None
        else _checked("native_max_buckets", max_buckets, ValueError)
    )
    return NativeConfig(_native.pick_schema(factor), float(zero), int(limit))
