"""The native histogram settings and ``metrics.Histogram``'s native arguments."""

from __future__ import annotations

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from prometheus_client import CollectorRegistry

import django_prometheus.cache.metrics  # noqa: F401  (module-level families: created before the overrides)
import django_prometheus.db.metrics  # noqa: F401
from django_prometheus import checks as dp_checks
from django_prometheus import metrics, native


def _hist(**kwargs):
    return metrics.Histogram("dp_native_settings", "Doc.", ["k"], registry=CollectorRegistry(), **kwargs)


def test_off_by_default_and_free():
    h = _hist()
    assert h.labels("a").native is None
    assert h._native_config is None


def test_native_true_uses_the_settings_defaults():
    h = _hist(native=True)
    part = h.labels("a").native
    assert (part.schema, part.zero_threshold, part.max_buckets) == (3, 2.0**-128, 160)
    h.labels("a").observe(0.3)
    assert part.count == 1
    unlabelled = metrics.Histogram("dp_native_one", "Doc.", registry=CollectorRegistry(), native=True)
    unlabelled.observe(2.0)
    assert unlabelled._cell.native.positive() == [(8, 1)]


@override_settings(
    PROMETHEUS_NATIVE_HISTOGRAMS=True,
    PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR=1.2,
    PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD=0.001,
    PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS=0,
)
def test_the_settings_turn_it_on_and_shape_it():
    part = _hist().labels("a").native
    assert (part.schema, part.zero_threshold, part.max_buckets) == (2, 0.001, 0)
    assert _hist(native=False).labels("a").native is None  # an explicit False wins
    part = _hist(native_bucket_factor=2, native_zero_threshold=0, native_max_buckets=20).labels("a").native
    assert (part.schema, part.zero_threshold, part.max_buckets) == (0, 0.0, 20)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROMETHEUS_NATIVE_HISTOGRAMS", "yes"),
        ("PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR", 1.0),
        ("PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR", 0.5),
        ("PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR", "1.1"),
        ("PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR", float("nan")),
        ("PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR", True),
        ("PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD", -1e-9),
        ("PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD", "0"),
        ("PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD", float("inf")),
        ("PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS", -1),
        ("PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS", 1.5),
        ("PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS", "160"),
    ],
)
def test_a_bad_setting_names_itself_at_creation_and_in_manage_py_check(name, value):
    with override_settings(**{"PROMETHEUS_NATIVE_HISTOGRAMS": True, name: value}):
        with pytest.raises(ImproperlyConfigured, match=name):
            _hist()
        errors = dp_checks.check_settings()
        assert {e.id for e in errors} == {"django_prometheus.E002"}
        assert len(errors) == 1 and name in errors[0].msg


def test_good_settings_pass_the_check_which_manage_py_check_runs():
    assert dp_checks.check_settings in checks.registry.registry.get_checks()
    assert dp_checks.check_settings() == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"native_bucket_factor": 1}, "native_bucket_factor"),
        ({"native_bucket_factor": "2"}, "native_bucket_factor"),
        ({"native_zero_threshold": -1}, "native_zero_threshold"),
        ({"native_max_buckets": -5}, "native_max_buckets"),
        ({"native_max_buckets": 2.0}, "native_max_buckets"),
    ],
)
def test_a_bad_argument_is_a_value_error_naming_it(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _hist(native=True, **kwargs)


def test_defaults_table_names_every_setting():
    assert native.DEFAULTS == {
        "PROMETHEUS_NATIVE_HISTOGRAMS": False,
        "PROMETHEUS_NATIVE_HISTOGRAM_BUCKET_FACTOR": 1.1,
        "PROMETHEUS_NATIVE_HISTOGRAM_ZERO_THRESHOLD": 2.0**-128,
        "PROMETHEUS_NATIVE_HISTOGRAM_MAX_BUCKETS": 160,
    }
