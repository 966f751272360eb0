"""What a scrape returns: the bytes of the exposition, for the view and the port exporters.

The one seam between "which registry, which format, which names" (decided by
``exports``) and "how the bytes are made" (here). Today prometheus_client
renders everything; the compiled writer and the compiled multiprocess merge
plug in behind these two functions without the exporters changing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import prometheus_client
from prometheus_client import multiprocess
from prometheus_client.openmetrics import exposition as openmetrics


def render(registry: Any, openmetrics_format: bool = False, names: Sequence[str] | None = None) -> bytes:
    """``generate_latest`` of ``registry`` (OpenMetrics' when asked), restricted to ``names`` if given."""
    if names:
        registry = registry.restricted_registry(names)
    if openmetrics_format:
        return openmetrics.generate_latest(registry)
    return prometheus_client.generate_latest(registry)


def aggregate_registry(path: str) -> prometheus_client.CollectorRegistry:
    """A registry that serves every process' values from the multiprocess directory ``path``."""
    registry = prometheus_client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry
