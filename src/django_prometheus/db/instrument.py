"""Database metrics without swapping ENGINE: ``PROMETHEUS_INSTRUMENT_DATABASES = True`` or a list of aliases.

Only Django's documented hooks: on ``connection_created`` the connection gets
one execute wrapper (``connection.execute_wrappers``), which records upstream's
DB families with the connection's real alias and vendor. Any backend that
honours execute wrappers is covered, whatever its ENGINE. A connection of one
of our ENGINEs is left alone: it already counts, once.

What the hooks cannot see: failed connection attempts (``connection_created``
fires after a connection succeeded) and transactions (commits and rollbacks
do not pass through execute wrappers). Those stay with the ENGINE path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.signals import connection_created

from django_prometheus import conf
from django_prometheus.db.common import DatabaseWrapperMixin, DBCells

__all__ = ["SETTING", "instrument_databases"]

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
    """Apply the setting (the app's ``ready()`` calls this): instrument the chosen aliases' connections."""
    global _wanted
    _wanted = _parse(conf.get(SETTING))
    if _wanted is None:
        connection_created.disconnect(dispatch_uid=_UID)
        return
    connection_created.connect(_on_connection_created, dispatch_uid=_UID)
    # Connections opened before the app was ready (in this thread) get it now.
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            instrument(connection)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    instrument(connection)


def instrument(connection: Any) -> None:
    """Count ``connection`` (a new connection) and make sure its execute wrapper is in place."""
    wanted = _wanted
    if wanted is None or isinstance(connection, DatabaseWrapperMixin):
        return
    if wanted is not True and connection.alias not in wanted:
        return
    cells = DBCells.for_labels(connection.alias, connection.vendor)
    cells.connections.inc()
    wrappers = connection.execute_wrappers
    ours = cells.execute_wrapper
    if not any(w is ours for w in wrappers):
        # First, i.e. outermost: a user's execute_wrapper() block appends and pops its own at the end.
        wrappers.insert(0, ours)


def uninstrument(connection: Any) -> None:
    """Take the execute wrapper off ``connection`` (tests, and users switching it off at runtime)."""
    ours = DBCells.for_labels(connection.alias, connection.vendor).execute_wrapper
    connection.execute_wrappers[:] = [w for w in connection.execute_wrappers if w is not ours]
