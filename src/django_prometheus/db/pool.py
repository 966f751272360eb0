"""Gauges of Django 5.1+ PostgreSQL connection pools (``OPTIONS["pool"]``), read from the pools at scrape."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from django_prometheus.disabled import is_disabled

__all__ = ["PoolCollector"]

logger = logging.getLogger(__name__)

#: Where Django keeps every alias' pool: a class attribute, shared by its subclasses (ours, PostGIS).
_BACKEND_MODULE = "django.db.backends.postgresql.base"


def _pools() -> dict[str, Any]:
    # Never imports the backend (nor psycopg): no PostgreSQL backend loaded, no pool.
    module = sys.modules.get(_BACKEND_MODULE)
    wrapper = getattr(module, "DatabaseWrapper", None)
    return getattr(wrapper, "_connection_pools", None) or {}


class PoolCollector(Collector):
    """``django_db_pool_connections{alias,state}`` and ``django_db_pool_size{alias,bound}`` per pooled alias.

    The values are the pool's own statistics (psycopg_pool's ``get_stats()``,
    which takes no lock): ``idle`` connections wait in the pool, ``in_use``
    ones are checked out (or being opened), ``waiting`` counts the requests
    queued for a connection. Both families are absent while no pool exists.
    """

    def __init__(self, namespace: str = "") -> None:
        prefix = f"{namespace}_" if namespace else ""
        self._connections = prefix + "django_db_pool_connections"
        self._size = prefix + "django_db_pool_size"

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                self._connections,
                "Connections of the database connection pool by alias and state (idle, in_use, waiting).",
                labels=["alias", "state"],
            ),
            GaugeMetricFamily(
                self._size,
                "Configured bounds of the database connection pool by alias (min, max).",
                labels=["alias", "bound"],
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # The names, so the registry refuses a clash; no pool is read at registration.
        for family in self._families():
            if not is_disabled(family.name):  # PROMETHEUS_DISABLED_METRICS
                yield family

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pools = _pools()
        if not pools:
            return
        connections, size = self._families()
        for alias, pool in sorted(pools.items()):
            try:
                stats = pool.get_stats()
                total, idle = stats["pool_size"], stats["pool_available"]
                waiting = stats.get("requests_waiting", 0)
                low, high = stats["pool_min"], stats["pool_max"]
            except Exception:  # a pool of another shape: skip it, never fail the scrape
                logger.debug("django_prometheus: cannot read the statistics of pool %r", alias, exc_info=True)
                continue
            connections.add_metric([alias, "idle"], idle)
            connections.add_metric([alias, "in_use"], max(total - idle, 0))
            connections.add_metric([alias, "waiting"], waiting)
            size.add_metric([alias, "min"], low)
            size.add_metric([alias, "max"], high)
        if connections.samples:
            for family in (connections, size):
                if not is_disabled(family.name):  # PROMETHEUS_DISABLED_METRICS
                    yield family
