"""Settings and environment rules, each in one place, with django-prometheus' defaults.

Like upstream, a module that imports this before settings are configured (a tool,
a docs build, a test runner's collection) gets the defaults instead of an
``ImproperlyConfigured`` error. Two moments read settings: the module-level
families (DB, cache, models, migrations) read ``NAMESPACE`` and
``PROMETHEUS_LATENCY_BUCKETS`` once, at import, as upstream does; the HTTP
``Metrics`` call ``namespace()`` and ``latency_buckets()`` when the middleware is
built, so ``override_settings`` in tests reaches them.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

from django_prometheus._core._dispatch import NO_EXTENSIONS

__all__ = [
    "DEFAULT_LATENCY_BUCKETS",
    "NAMESPACE",
    "NO_EXTENSIONS",
    "PROMETHEUS_LATENCY_BUCKETS",
    "latency_buckets",
    "multiprocess_dir",
    "namespace",
    "setting",
]

DEFAULT_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, float("inf"),
)  # fmt: skip


def setting(name: str, default: Any) -> Any:
    """``settings.<name>`` when settings are configured, else ``default``."""
    return getattr(settings, name, default) if settings.configured else default


def namespace() -> str:
    """``PROMETHEUS_METRIC_NAMESPACE``: prepended with ``_`` to every family name (default none)."""
    return setting("PROMETHEUS_METRIC_NAMESPACE", "")


def latency_buckets() -> tuple[float, ...]:
    """``PROMETHEUS_LATENCY_BUCKETS``: the upper bounds of the latency histograms."""
    return tuple(setting("PROMETHEUS_LATENCY_BUCKETS", DEFAULT_LATENCY_BUCKETS))


def multiprocess_dir() -> str | None:
    """The multiprocess directory, or None in single-process mode.

    prometheus_client's rule (``values.py``): multiprocess mode when
    ``PROMETHEUS_MULTIPROC_DIR`` or the older ``prometheus_multiproc_dir`` is
    present in the environment, even if empty (an empty path then fails loudly
    where the files are written or read, as it does in prometheus_client).
    """
    env = os.environ
    if "PROMETHEUS_MULTIPROC_DIR" not in env and "prometheus_multiproc_dir" not in env:
        return None
    return env.get("PROMETHEUS_MULTIPROC_DIR") or env.get("prometheus_multiproc_dir") or ""


#: ``PROMETHEUS_METRIC_NAMESPACE`` when this module was imported (upstream's name).
NAMESPACE: str = namespace()

#: ``PROMETHEUS_LATENCY_BUCKETS`` when this module was imported (upstream's name).
PROMETHEUS_LATENCY_BUCKETS = setting("PROMETHEUS_LATENCY_BUCKETS", DEFAULT_LATENCY_BUCKETS)
