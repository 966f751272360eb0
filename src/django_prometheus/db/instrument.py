"""Database metrics without swapping ENGINE: ``PROMETHEUS_INSTRUMENT_DATABASES = True`` or a list of aliases.

Django's documented hooks first: on ``connection_created`` the connection gets
one execute wrapper (``connection.execute_wrappers``), which records upstream's
DB families with the connection's real alias and vendor. Any backend that
honours execute wrappers is covered, whatever its ENGINE. A connection of one
of our ENGINEs is left alone: it already counts, once.

Connection attempts: ``connection_created`` is only sent for a connection that
succeeded, so the ``DatabaseWrapper`` objects Django's connection handler
(``django.db.connections``) creates for a chosen alias get their
``get_new_connection`` wrapped on the instance (the class stays Django's):
every attempt counts in ``django_db_new_connections_total`` and every failed one
in ``django_db_new_connection_errors_total``, as on the ENGINE path.
The transaction families stay with the ENGINE path (commits and rollbacks do
not pass through execute wrappers); for queries per request, the instance's
``_set_autocommit``/``_commit``/``_rollback`` are wrapped so that ``BEGIN``,
``COMMIT`` and ``ROLLBACK`` count where Django logs them, as on the ENGINE path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.signals import connection_created

from django_prometheus import conf
from django_prometheus.db import pool
from django_prometheus.db.common import (
    DatabaseWrapperMixin,
    DBCells,
    account_transaction_control,
    remove_transaction_control,
)

__all__ = ["SETTING", "instrument_databases", "is_instrumentation"]

SETTING = "PROMETHEUS_INSTRUMENT_DATABASES"
_UID = "django_prometheus.db.instrument"

#: True (every alias), a frozenset of aliases, or None (off).
_wanted: bool | frozenset[str] | None = None


def _parse(value: Any) -> bool | frozenset[str] | None:
    if value is True:
        return True
    if value is False or value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ImproperlyConfigured(
            f"{SETTING} must be True, False or a list of database aliases, not {value!r}"
        )
    aliases = list(value)
    bad = [a for a in aliases if not isinstance(a, str)]
    if bad:
        raise ImproperlyConfigured(f"{SETTING}: aliases are strings, got {bad!r}")
    unknown = sorted(set(aliases) - set(settings.DATABASES))
    if unknown:
        raise ImproperlyConfigured(f"{SETTING} names aliases that are not in DATABASES: {', '.join(unknown)}")
    return frozenset(aliases) or None


def instrument_databases() -> None:
    """Apply the setting (the app's ``ready()`` calls this): instrument the chosen aliases' connections.

    Idempotent: ``ready()`` runs again under ``modify_settings(INSTALLED_APPS=...)``.
    """
    global _wanted
    _wanted = _parse(conf.get(SETTING))
    if _wanted is None:
        connection_created.disconnect(dispatch_uid=_UID)
        connections.__dict__.pop("create_connection", None)
        return
    # One dispatch_uid keeps one receiver however often this connects it.
    connection_created.connect(_on_connection_created, dispatch_uid=_UID)
    if not getattr(connections.create_connection, "_prometheus_watching", False):
        connections.create_connection = _watching_handler(connections.create_connection)
    # Connections made before the app was ready (in this thread) get it now; an open one
    # that already has our wrapper was counted when it connected, and is not counted again.
    for connection in connections.all(initialized_only=True):
        watch(connection)
        if connection.connection is not None:
            instrument(connection, new=False)


def _wanted_alias(connection: Any) -> bool:
    wanted = _wanted
    if wanted is None or isinstance(connection, DatabaseWrapperMixin):
        return False
    return wanted is True or connection.alias in wanted


def _watching_handler(create: Any) -> Any:
    """The connection handler's ``create_connection``, watching the connects of what it creates."""

    def create_connection(alias: str) -> Any:
        connection = create(alias)
        watch(connection)
        return connection

    create_connection._prometheus_watching = True  # type: ignore[attr-defined]
    return create_connection


def watch(connection: Any) -> None:
    """Count ``connection``'s connection attempts and failures from now on (once per wrapper object).

    Only for a chosen alias on a stock ENGINE; what it wraps is the instance's
    ``get_new_connection``, so the class and every other wrapper stay Django's.
    """
    if not _wanted_alias(connection) or _counts_connects(connection):
        return
    pool.watch(connection)  # a pooled alias: its checkouts and returns too (multiprocess mode)
    real = connection.get_new_connection
    cells = DBCells.for_labels(connection.alias, connection.vendor)

    def get_new_connection(*args: Any, **kwargs: Any) -> Any:
        if not _wanted_alias(connection):  # switched off since
            return real(*args, **kwargs)
        cells.connections.inc()
        try:
            return real(*args, **kwargs)
        except BaseException:
            cells.connection_errors.inc()
            raise

    get_new_connection._prometheus_counts = True  # type: ignore[attr-defined]
    connection.get_new_connection = get_new_connection


def _counts_connects(connection: Any) -> bool:
    return getattr(connection.__dict__.get("get_new_connection"), "_prometheus_counts", False)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    instrument(connection)


def instrument(connection: Any, new: bool = True) -> None:
    """Make sure ``connection``'s execute wrapper is in place, and count it as a new connection.

    A connection whose attempts are watched (``watch``) was counted when attempted.
    ``new=False`` (a connection found open, not one just made): counted only if it had
    no wrapper of ours yet, so sweeping the open connections twice never counts twice.
    """
    if not _wanted_alias(connection):
        return
    cells = DBCells.for_labels(connection.alias, connection.vendor)
    wrappers = connection.execute_wrappers
    ours = cells.execute_wrapper
    missing = not any(w is ours for w in wrappers)
    watched = _counts_connects(connection)
    if (new and not watched) or (missing and not new):
        cells.connections.inc()
    if missing:
        # First, i.e. outermost: a user's execute_wrapper() block appends and pops its own at the end.
        wrappers.insert(0, ours)
    # Before any transaction: atomic() connects first, then begins.
    account_transaction_control(connection)


def is_instrumentation(wrapper: Any) -> bool:
    """Whether ``wrapper``, an entry of some ``connection.execute_wrappers``, is ours.

    For code that inspects that list: ``[w for w in connection.execute_wrappers
    if not is_instrumentation(w)]`` is what it would hold without this package.
    """
    return any(wrapper is cells.execute_wrapper for cells in list(DBCells._shared.values()))


def uninstrument(connection: Any) -> None:
    """Take the execute wrapper off ``connection`` (tests, and users switching it off at runtime)."""
    ours = DBCells.for_labels(connection.alias, connection.vendor).execute_wrapper
    connection.execute_wrappers[:] = [w for w in connection.execute_wrappers if w is not ours]
    if _counts_connects(connection):
        del connection.get_new_connection
    pool.unwatch(connection)
    remove_transaction_control(connection)
