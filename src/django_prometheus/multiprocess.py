"""Multiprocess mode: every process' values, read from the multiprocess directory.

``AggregateCollector`` is what the view and the single export port serve: the
sum (or min, max, ... per gauge ``multiprocess_mode``) of every process'
files, exactly what prometheus_client's ``MultiProcessCollector`` gives.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["AggregateCollector"]


class AggregateCollector:
    """Every process' metrics from the files of ``path`` (a drop-in for ``MultiProcessCollector``)."""

    def __init__(self, path: str) -> None:
        if not path or not os.path.isdir(path):
            raise ValueError(f"the multiprocess directory {path!r} is not a directory")
        self._path = path

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        return MultiProcessCollector.merge(glob.glob(os.path.join(self._path, "*.db")), accumulate=True)

    def _expo_render(
        self, openmetrics_format: bool, wanted: frozenset[str] | None, use_created: bool
    ) -> None:
        return None
