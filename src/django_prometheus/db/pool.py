"""Metrics of Django 5.1+ PostgreSQL connection pools (``OPTIONS["pool"]``), from psycopg_pool's statistics.

Per alias: two gauges, ``django_db_pool_connections{alias,state}`` (``idle``,
``in_use``, ``waiting``) and ``django_db_pool_size{alias,bound}`` (``min``,
``max``), and four counters, ``django_db_pool_requests_total`` (connections
asked of the pool), ``django_db_pool_wait_seconds_total`` (time requests
waited in its queue), ``django_db_pool_timeouts_total`` (requests that got no
connection) and ``django_db_pool_connections_lost_total`` (broken connections
the pool found and replaced).

Single-process mode: ``PoolCollector`` reads the pools at scrape. Multiprocess
mode: the scrape reads files only, and each worker's pool lives in that
worker, so each worker writes its own pool's statistics (``PoolPublisher``)
whenever it checks a connection out of its pool or returns one: the gauges to
prometheus_client's ``liveall`` gauge files (the aggregate labels each
worker's series with its ``pid``; a dead worker's file goes with
``mark_process_dead``), the counters to this package's counter files (summed
over every process, dead ones included, as every counter is).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from django_prometheus.disabled import is_disabled

__all__ = ["PoolCollector", "PoolPublisher", "PoolStats", "install", "read_stats"]

logger = logging.getLogger(__name__)

#: Where Django keeps every alias' pool: a class attribute, shared by its subclasses (ours, PostGIS).
_BACKEND_MODULE = "django.db.backends.postgresql.base"

CONNECTIONS_DOC = "Connections of the database connection pool by alias and state (idle, in_use, waiting)."
SIZE_DOC = "Configured bounds of the database connection pool by alias (min, max)."
#: (family name without _total, psycopg_pool statistic, scale, help)
COUNTERS = (
    ("django_db_pool_requests", "requests_num", 1.0,
     "Counter of connections requested from the database connection pool by alias."),
    ("django_db_pool_wait_seconds", "requests_wait_ms", 0.001,
     "Counter of seconds requests waited for a connection of the database connection pool by alias."),
    ("django_db_pool_timeouts", "requests_errors", 1.0,
     "Counter of requests that got no connection from the database connection pool (timeout, "
     "queue full) by alias."),
    ("django_db_pool_connections_lost", "connections_lost", 1.0,
     "Counter of broken connections found and replaced by the database connection pool by alias."),
)  # fmt: skip
STATES = ("idle", "in_use", "waiting")
BOUNDS = ("min", "max")


def _pools() -> dict[str, Any]:
    # Never imports the backend (nor psycopg): no PostgreSQL backend loaded, no pool.
    module = sys.modules.get(_BACKEND_MODULE)
    wrapper = getattr(module, "DatabaseWrapper", None)
    return getattr(wrapper, "_connection_pools", None) or {}


def read_stats(
    pool: Any, waiting_extra: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(idle, in_use, waiting), (min, max), counters`` of ``pool`` (the counters in ``COUNTERS``' order).

    ``get_stats()`` takes no lock; a statistic psycopg_pool has not counted yet is 0.
    """
    stats = pool.get_stats()
    total, idle = stats["pool_size"], stats["pool_available"]
    state = (
        float(idle),
        float(max(total - idle, 0)),
        float(stats.get("requests_waiting", 0) + waiting_extra),
    )
    bounds = (float(stats["pool_min"]), float(stats["pool_max"]))
    counters = tuple(stats.get(key, 0) * scale for _name, key, scale, _doc in COUNTERS)
    return state, bounds, counters


class PoolStats:
    """This process' counter totals per alias, monotonic across pools: a pool closed and made
    again (``close_pool()``, a settings change in tests) starts its own statistics at 0."""

    def __init__(self) -> None:
        # alias -> [weakref to the pool last read, totals of pools before it, its last reading]
        self._by_alias: dict[str, list[Any]] = {}

    def totals(self, alias: str, pool: Any, counters: tuple[float, ...]) -> tuple[float, ...]:
        entry = self._by_alias.get(alias)
        if entry is None:
            entry = self._by_alias[alias] = [None, (0.0,) * len(counters), (0.0,) * len(counters)]
        ref, base, last = entry
        if ref is None or ref() is not pool:
            if ref is not None:
                base = tuple(b + x for b, x in zip(base, last, strict=True))
            entry[0], entry[1] = weakref.ref(pool), base
        entry[2] = counters
        return tuple(b + x for b, x in zip(base, counters, strict=True))

    def known(self) -> dict[str, tuple[float, ...]]:
        """Every alias read so far, with its totals as last read."""
        return {
            alias: tuple(b + x for b, x in zip(base, last, strict=True))
            for alias, (_ref, base, last) in self._by_alias.items()
        }


class PoolCollector(Collector):
    """The six families per pooled alias, read from the pools at scrape (single-process mode).

    The gauges are absent while no pool exists; a counter stays once its alias
    had a pool in this process (a closed pool's counts do not vanish).
    """

    def __init__(self, namespace: str = "") -> None:
        self._prefix = f"{namespace}_" if namespace else ""
        self._stats = PoolStats()
        self._lock = threading.Lock()

    def _families(self) -> tuple[Any, ...]:
        prefix = self._prefix
        return (
            GaugeMetricFamily(
                prefix + "django_db_pool_connections", CONNECTIONS_DOC, labels=["alias", "state"]
            ),
            GaugeMetricFamily(prefix + "django_db_pool_size", SIZE_DOC, labels=["alias", "bound"]),
            *(CounterMetricFamily(prefix + name, doc, labels=["alias"]) for name, _k, _s, doc in COUNTERS),
        )

    def describe(self) -> Iterator[Any]:
        # The names, so the registry refuses a clash; no pool is read at registration.
        for family in self._families():
            if not is_disabled(family.name):  # PROMETHEUS_DISABLED_METRICS
                yield family

    def remember(self, alias: str, pool: Any) -> None:
        """Read ``pool``'s counters before it closes, so its last counts stay. Never raises."""
        try:
            values = read_stats(pool)[2]
            with self._lock:
                self._stats.totals(alias, pool, values)
        except Exception:
            logger.debug("django_prometheus: cannot read the statistics of pool %r", alias, exc_info=True)

    def collect(self) -> Iterator[Any]:
        pools = _pools()
        if not pools and not self._stats.known():
            return
        connections, size, *counters = self._families()
        with self._lock:
            for alias, pool in sorted(pools.items()):
                try:
                    state, bounds, values = read_stats(pool)
                except Exception:  # a pool of another shape: skip it, never fail the scrape
                    logger.debug(
                        "django_prometheus: cannot read the statistics of pool %r", alias, exc_info=True
                    )
                    continue
                for label, value in zip(STATES, state, strict=True):
                    connections.add_metric([alias, label], value)
                for label, value in zip(BOUNDS, bounds, strict=True):
                    size.add_metric([alias, label], value)
                self._stats.totals(alias, pool, values)
            for alias, totals in sorted(self._stats.known().items()):
                for family, value in zip(counters, totals, strict=True):
                    family.add_metric([alias], value)
        if connections.samples:
            for family in (connections, size):
                if not is_disabled(family.name):  # PROMETHEUS_DISABLED_METRICS
                    yield family
        if counters[0].samples:
            for family in counters:
                if not is_disabled(family.name):
                    yield family


class PoolPublisher:
    """Multiprocess mode: this worker's pool statistics, written where the aggregate reads them.

    ``checkout(alias, pool, get)`` wraps a checkout and ``returned(alias, pool)``
    follows a return; the families are this package's metric classes (gauges
    with ``multiprocess_mode="liveall"``, counters), registered in ``registry``
    so a port-range exporter shows its own worker's too.
    """

    def __init__(self, namespace: str = "", registry: Any = None) -> None:
        from django_prometheus.metrics import Counter, Gauge

        kwargs = (
            {"namespace": namespace} if registry is None else {"namespace": namespace, "registry": registry}
        )
        self.connections = Gauge(
            "django_db_pool_connections",
            CONNECTIONS_DOC,
            ["alias", "state"],
            multiprocess_mode="liveall",
            **kwargs,
        )
        self.size = Gauge(
            "django_db_pool_size", SIZE_DOC, ["alias", "bound"], multiprocess_mode="liveall", **kwargs
        )
        self.counters = tuple(Counter(name, doc, ["alias"], **kwargs) for name, _k, _s, doc in COUNTERS)
        self._lock = threading.Lock()
        self._forget()

    def _forget(self) -> None:
        # Per process: a worker forked from a process that wrote (gunicorn --preload) starts afresh.
        self._pid = os.getpid()
        self._stats = PoolStats()
        # alias -> (cells, last written gauge values, counter totals written)
        self._written: dict[str, list[Any]] = {}

    def _cells(self, alias: str) -> list[Any]:
        if self._pid != os.getpid():
            self._forget()
        entry = self._written.get(alias)
        if entry is None:
            cells = (
                [self.connections.labels(alias, s) for s in STATES]
                + [self.size.labels(alias, b) for b in BOUNDS]
                + [c.labels(alias) for c in self.counters]
            )
            entry = self._written[alias] = [cells, [None] * 5, (0.0,) * len(COUNTERS)]
        return entry

    def publish(self, alias: str, pool: Any, waiting_extra: int = 0) -> None:
        """Write ``pool``'s statistics now (only what changed). Never raises."""
        try:
            # Read under the lock too: two threads' readings are written in the order they were taken.
            with self._lock:
                state, bounds, values = read_stats(pool, waiting_extra)
                cells, gauges, written = self._cells(alias)
                for i, value in enumerate((*state, *bounds)):
                    if gauges[i] != value:
                        cells[i].set(value)
                        gauges[i] = value
                totals = self._stats.totals(alias, pool, values)
                for cell, now, before in zip(cells[5:], totals, written, strict=True):
                    if now > before:
                        cell.inc(now - before)
                self._written[alias][2] = totals
        except Exception:  # instrumentation never breaks a checkout
            logger.debug("django_prometheus: cannot write the statistics of pool %r", alias, exc_info=True)

    def checkout(self, alias: str, pool: Any, get: Callable[[], Any]) -> Any:
        """``get()`` (the checkout), with the statistics written before it waits and after it returns."""
        try:
            idle = pool.get_stats()["pool_available"]
        except Exception:
            idle = 1
        if not idle:  # no idle connection: this request is about to wait in the pool's queue
            self.publish(alias, pool, waiting_extra=1)
        try:
            return get()
        finally:
            self.publish(alias, pool)

    def closed(self, alias: str) -> None:
        """The alias' pool was closed: no connection left, nothing waits (its counters stay)."""
        with self._lock:
            entry = self._written.get(alias)
            if entry is not None:
                for i in range(len(STATES)):
                    entry[0][i].set(0.0)
                    entry[1][i] = 0.0


# The hooks both DB paths call (our PostgreSQL ENGINE's mixin, and the no-swap path's
# instance wrappers): ``db.metrics`` installs the collector or the publisher.
_collector: PoolCollector | None = None
_publisher: PoolPublisher | None = None


def install(collector: PoolCollector | None = None, publisher: PoolPublisher | None = None) -> None:
    """Where the hooks report: ``collector`` in single-process mode, ``publisher`` in multiprocess mode."""
    global _collector, _publisher
    _collector, _publisher = collector, publisher


def _pool_of(connection: Any) -> Any:
    """``connection``'s pool if it has one already; never creates one (Django's ``pool`` property does)."""
    if not connection.settings_dict["OPTIONS"].get("pool"):
        return None
    return getattr(connection, "_connection_pools", {}).get(connection.alias)


def checkout(connection: Any, get: Callable[[], Any]) -> Any:
    """``get()``, Django's ``get_new_connection``: in multiprocess mode the pool's statistics are written."""
    publisher = _publisher
    if publisher is None or not connection.settings_dict["OPTIONS"].get("pool"):
        return get()
    try:
        pool = connection.pool  # Django's property: made on the first checkout
    except Exception:  # Django's own error (a pool with CONN_MAX_AGE) comes from get()
        return get()
    if pool is None:
        return get()
    return publisher.checkout(connection.alias, pool, get)


def returned(connection: Any, close: Callable[[], Any]) -> Any:
    """``close()``, Django's ``_close`` (a pooled connection goes back to its pool), then the statistics."""
    publisher = _publisher
    if publisher is None or connection.connection is None:
        return close()
    pool = _pool_of(connection)
    try:
        return close()
    finally:
        if pool is not None:
            publisher.publish(connection.alias, pool)


def closing_pool(connection: Any, close_pool: Callable[[], Any]) -> Any:
    """``close_pool()``: the pool's last counts are kept, and (multiprocess) its gauges read 0 after."""
    pool = _pool_of(connection)
    if pool is not None:
        if _publisher is not None:
            _publisher.publish(connection.alias, pool)
        elif _collector is not None:
            _collector.remember(connection.alias, pool)
    result = close_pool()
    if pool is not None and _publisher is not None:
        _publisher.closed(connection.alias)
    return result


def watch(connection: Any) -> None:
    """The no-swap path: the hooks on ``connection``'s instance (a pooled PostgreSQL alias only)."""
    if connection.vendor != "postgresql" or not connection.settings_dict["OPTIONS"].get("pool"):
        return
    if getattr(connection.__dict__.get("_close"), "_prometheus_pool", False) or not hasattr(
        connection, "close_pool"
    ):
        return
    real_get, real_close, real_close_pool = (
        connection.get_new_connection,
        connection._close,
        connection.close_pool,
    )

    def get_new_connection(*args: Any, **kwargs: Any) -> Any:
        return checkout(connection, lambda: real_get(*args, **kwargs))

    def _close() -> Any:
        return returned(connection, real_close)

    def close_pool() -> Any:
        return closing_pool(connection, real_close_pool)

    _close._prometheus_pool = True  # type: ignore[attr-defined]
    connection.get_new_connection = get_new_connection
    connection._close = _close
    connection.close_pool = close_pool


def unwatch(connection: Any) -> None:
    """Undo ``watch`` (``get_new_connection`` is the caller's to restore)."""
    if getattr(connection.__dict__.get("_close"), "_prometheus_pool", False):
        del connection._close
        connection.__dict__.pop("close_pool", None)
