"""A PostgreSQL outage: failed connects count on both paths (ENGINE and PROMETHEUS_INSTRUMENT_DATABASES).

The server is the test's own (tests/db_throwaway_pg.py), stopped and started
again during the test; the shared service is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connections

from tests.db_throwaway_pg import ThrowawayPostgres
from tests.test_db import Delta
from tests.test_db_instrument import switch

ENGINES = {
    "outage_ours": "django_prometheus.db.backends.postgresql",
    "outage_bare": "django.db.backends.postgresql",
    "outage_pool_ours": "django_prometheus.db.backends.postgresql",
    "outage_pool_bare": "django.db.backends.postgresql",
}


@pytest.fixture
def no_swap() -> Iterator[None]:
    """``PROMETHEUS_INSTRUMENT_DATABASES = True``, as the app's ready() applies it."""
    switch(True)
    yield
    switch(False)


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def aliases(server: ThrowawayPostgres) -> Iterator[list[str]]:
    """The four aliases on ``server``, in Django's connection handler (as DATABASES would put them)."""
    base = connections.settings["postgresql_bare"]
    for alias, engine in ENGINES.items():
        options = {"pool": {"min_size": 1, "max_size": 2, "timeout": 1}} if "_pool_" in alias else {}
        connections.settings[alias] = {**base, **server.settings, "ENGINE": engine, "OPTIONS": options}
    try:
        yield list(ENGINES)
    finally:
        for alias in ENGINES:
            if hasattr(connections._connections, alias):
                connection = connections[alias]
                connection.close()
                if connection.settings_dict["OPTIONS"].get("pool"):
                    connection.close_pool()
                del connections[alias]
            del connections.settings[alias]


def query(alias: str) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


def test_failed_connects_count_on_both_paths_through_an_outage(
    postgres: ThrowawayPostgres, django_db_blocker: Any, no_swap: None
) -> None:
    # Issue 22 item 5: with PROMETHEUS_INSTRUMENT_DATABASES, django_db_new_connection_errors_total
    # stayed 0 through an outage while the ENGINE path counted every failed connect.
    with django_db_blocker.unblock(), aliases(postgres) as names:
        for alias in names:
            assert query(alias) == 1
            connections[alias].close()
            if "_pool_" in alias:  # a pool would hand out its idle (dead) connection: a new one must connect
                connections[alias].close_pool()
        deltas = {alias: Delta(alias, "postgresql") for alias in names}
        postgres.stop()
        for alias in names:
            for _ in range(3):
                with pytest.raises(OperationalError):
                    connections[alias].ensure_connection()
        during = {alias: delta() for alias, delta in deltas.items()}
        postgres.start()
        for alias in names:
            if "_pool_" in alias:  # the outage's pool backs off between reconnects: start afresh
                connections[alias].close_pool()
            assert query(alias) == 1
        after = {alias: delta() for alias, delta in deltas.items()}
    for alias in names:
        assert during[alias] == {"connections": 3, "connection_errors": 3}, alias
        # Back up: one new connection, the query, no further error.
        assert after[alias] == {
            "connections": 4,
            "connection_errors": 3,
            "execute": 1,
            "duration_count": 1,
        }, alias
