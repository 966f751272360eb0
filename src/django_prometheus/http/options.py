"""The settings of the small HTTP options (issue 27), one function each, validated where read.

- ``PROMETHEUS_TOTAL_BYTES_BUCKETS``: the bounds of the two body-size histograms;
- ``PROMETHEUS_IGNORED_EXCEPTIONS``: exception classes the exception families do not count;
- ``PROMETHEUS_DISABLED_METRICS``: family names (as exposed) never registered nor recorded;
- ``PROMETHEUS_SERVER_TIMING`` and ``PROMETHEUS_SERVER_TIMING_ALLOWED_IPS``: the Server-Timing header.

Each raises ``ImproperlyConfigured`` naming the setting and the value it cannot use;
``django_prometheus.checks_http`` turns that into a ``manage.py check`` message.
"""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_prometheus import conf

__all__ = [
    "DEFAULT_SERVER_TIMING_ALLOWED_IPS",
    "DEFAULT_TOTAL_BYTES_BUCKETS",
    "disabled_metrics",
    "ignored_exceptions",
    "server_timing",
    "server_timing_allowed_ips",
    "total_bytes_buckets",
]

#: Upstream's bounds of the body-size histograms: 0, 1, 2, 4, ... 2**29, +Inf.
DEFAULT_TOTAL_BYTES_BUCKETS: tuple[float, ...] = conf.SETTINGS["PROMETHEUS_TOTAL_BYTES_BUCKETS"].default
#: Who gets a Server-Timing header when ``PROMETHEUS_SERVER_TIMING_ALLOWED_IPS`` is not set.
DEFAULT_SERVER_TIMING_ALLOWED_IPS: tuple[str, ...] = conf.SETTINGS[
    "PROMETHEUS_SERVER_TIMING_ALLOWED_IPS"
].default


def _string_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ImproperlyConfigured(f"{name} must be a list of strings, not {value!r}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ImproperlyConfigured(f"{name} must be a list of non-empty strings; {item!r} is not one")
    return tuple(item.strip() for item in value)


def total_bytes_buckets() -> tuple[float, ...]:
    """``PROMETHEUS_TOTAL_BYTES_BUCKETS``: increasing upper bounds (bytes); default ``PowersOf(2, 30)``."""
    value = conf.setting("PROMETHEUS_TOTAL_BYTES_BUCKETS", DEFAULT_TOTAL_BYTES_BUCKETS)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ImproperlyConfigured(
            f"PROMETHEUS_TOTAL_BYTES_BUCKETS must be a non-empty list of increasing numbers, not {value!r}"
        )
    bounds = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or math.isnan(item):
            raise ImproperlyConfigured(f"PROMETHEUS_TOTAL_BYTES_BUCKETS: {item!r} is not a number")
        bounds.append(float(item))
    if any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
        raise ImproperlyConfigured(f"PROMETHEUS_TOTAL_BYTES_BUCKETS must be in increasing order: {value!r}")
    return tuple(bounds)


def ignored_exceptions() -> tuple[type[BaseException], ...]:
    """``PROMETHEUS_IGNORED_EXCEPTIONS``: the classes its dotted paths name (default none)."""
    paths = _string_list("PROMETHEUS_IGNORED_EXCEPTIONS", conf.setting("PROMETHEUS_IGNORED_EXCEPTIONS", ()))
    classes = []
    for path in paths:
        try:
            found = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"PROMETHEUS_IGNORED_EXCEPTIONS: cannot import {path!r} ({exc})"
            ) from None
        if not (isinstance(found, type) and issubclass(found, BaseException)):
            raise ImproperlyConfigured(f"PROMETHEUS_IGNORED_EXCEPTIONS: {path!r} is not an exception class")
        classes.append(found)
    return tuple(classes)


def disabled_metrics() -> frozenset[str]:
    """``PROMETHEUS_DISABLED_METRICS``: family names as exposed (namespace included; default none)."""
    return frozenset(
        _string_list("PROMETHEUS_DISABLED_METRICS", conf.setting("PROMETHEUS_DISABLED_METRICS", ()))
    )


def server_timing() -> bool:
    """``PROMETHEUS_SERVER_TIMING``: add a ``Server-Timing`` header to allowed clients' responses."""
    value = conf.setting("PROMETHEUS_SERVER_TIMING", False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"PROMETHEUS_SERVER_TIMING must be True or False, not {value!r}")
    return value


def server_timing_allowed_ips() -> tuple[str, ...]:
    """``PROMETHEUS_SERVER_TIMING_ALLOWED_IPS``: addresses or CIDRs (default loopback only)."""
    value = conf.setting("PROMETHEUS_SERVER_TIMING_ALLOWED_IPS", DEFAULT_SERVER_TIMING_ALLOWED_IPS)
    return _string_list("PROMETHEUS_SERVER_TIMING_ALLOWED_IPS", value)
