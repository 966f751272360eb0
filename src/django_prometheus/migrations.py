"""Applied and unapplied migrations per database connection, as gauges (``PROMETHEUS_EXPORT_MIGRATIONS``)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from django.core.signals import request_started
from django.db import connections
from django.db.backends.dummy.base import DatabaseWrapper as DummyDatabaseWrapper
from django.db.models.signals import post_migrate

from django_prometheus.conf import NAMESPACE
from django_prometheus.metrics import Gauge

__all__ = [
    "ExportMigrations",
    "ExportMigrationsForDatabase",
    "applied_migrations",
    "export_later",
    "export_pending",
    "unapplied_migrations",
]

logger = logging.getLogger(__name__)

# Every worker of a multiprocess server sets these at start-up. "mostrecent" keeps
# one series per connection (not one per worker) holding the newest value, so a
# deploy that applies migrations is not masked by dead workers' older files, as
# "max" would be (the multiprocess store in django_prometheus.metrics honours the mode).
unapplied_migrations = Gauge(
    "django_migrations_unapplied_total",
    "Count of unapplied migrations by database connection",
    ["connection"],
    namespace=NAMESPACE,
    multiprocess_mode="mostrecent",
)
applied_migrations = Gauge(
    "django_migrations_applied_total",
    "Count of applied migrations by database connection",
    ["connection"],
    namespace=NAMESPACE,
    multiprocess_mode="mostrecent",
)


def ExportMigrationsForDatabase(alias: str, executor: Any) -> None:
    """Set both gauges of ``alias`` from a ``MigrationExecutor`` on that connection."""
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    unapplied_migrations.labels(alias).set(len(plan))
    applied_migrations.labels(alias).set(len(executor.loader.applied_migrations))


def ExportMigrations() -> None:
    """Export the migration gauges of every configured database.

    Skipped when there is no real database (the dummy backend). Safe to call
    while an event loop runs (an app starting under ASGI): the database work
    then happens in a short-lived thread, where Django allows it. A database
    that cannot be read is logged, never raised: it must not stop the app.
    """
    if all(isinstance(connections[alias], DummyDatabaseWrapper) for alias in connections):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _export_all()
        return
    worker = threading.Thread(target=_export_all_and_close, name="django-prometheus-migrations")
    worker.start()
    worker.join()


_pending = False
_pending_lock = threading.Lock()
_UID = "django_prometheus.migrations"


def export_later(app_config: Any) -> None:
    """Have the gauges read where Django allows database access, instead of in ``ready()``.

    Django warns about queries during app initialization (every management
    command would print it). The gauges are read after each ``migrate`` (its
    ``post_migrate`` signal), and, if that has not happened, on this process'
    first request or first port-exporter scrape, whichever comes first.
    """
    global _pending
    _pending = True
    request_started.connect(_on_request_started, weak=False, dispatch_uid=_UID)
    post_migrate.connect(_on_post_migrate, sender=app_config, weak=False, dispatch_uid=_UID)


def export_pending() -> None:
    """Read the gauges now if ``export_later()`` asked for it and they have not been read yet."""
    global _pending
    if not _pending:
        return
    with _pending_lock:  # a concurrent first scrape waits for the values instead of missing them
        if not _pending:
            return
        request_started.disconnect(dispatch_uid=_UID)  # from now on a request pays nothing
        try:
            ExportMigrations()
        finally:
            _pending = False


def _on_request_started(**kwargs: Any) -> None:
    export_pending()


def _on_post_migrate(**kwargs: Any) -> None:
    global _pending
    with _pending_lock:
        _pending = False
        request_started.disconnect(dispatch_uid=_UID)
        ExportMigrations()


def _export_all_and_close() -> None:
    try:
        _export_all()
    finally:
        connections.close_all()


def _export_all() -> None:
    from django.db.migrations.executor import MigrationExecutor

    for alias in connections:
        connection = connections[alias]
        if isinstance(connection, DummyDatabaseWrapper):
            continue
        was_closed = connection.connection is None
        try:
            ExportMigrationsForDatabase(alias, MigrationExecutor(connection))
        except Exception:
            logger.warning(
                "django_prometheus: cannot export the migrations of database %r", alias, exc_info=True
            )
        finally:
            # A connection opened only for this (at start-up, maybe before a
            # server forks its workers) is not left behind.
            if was_closed:
                connection.close()
