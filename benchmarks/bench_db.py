"""Database backends: the cost that instrumentation adds to ``cursor.execute("SELECT 1")``.

Two shapes, on SQLite (in memory) and on PostgreSQL (the server of
``scripts/services.sh``, psycopg 3): a cursor reused for every query, and a new
cursor per query (``with connection.cursor() as c: c.execute(...)``), which
is where a backend that builds a class per cursor pays most.
"""

from __future__ import annotations

import importlib.util
import os
from functools import partial
from typing import Any

from ._harness import IMPLS, Case, Op, prepare

SQL = "SELECT 1"

ENGINES = {
    "sqlite": ("django.db.backends.sqlite3", "django_prometheus.db.backends.sqlite3"),
    "postgresql": ("django.db.backends.postgresql", "django_prometheus.db.backends.postgresql"),
}


def _database(vendor: str, impl: str) -> dict[str, Any]:
    bare, ours = ENGINES[vendor]
    engine = bare if impl == "bare" else ours
    if vendor == "sqlite":
        return {"ENGINE": engine, "NAME": ":memory:"}
    return {
        "ENGINE": engine,
        "NAME": os.environ.get("DP_PG_NAME", "dp"),
        "USER": os.environ.get("DP_PG_USER", "dp"),
        "PASSWORD": os.environ.get("DP_PG_PASSWORD", "dp"),
        "HOST": os.environ.get("DP_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DP_PG_PORT", "15432"),
    }


def _settings_for(vendor: str, noswap: bool = False, per_request: bool = False):
    def settings(impl: str) -> dict[str, Any]:
        if vendor == "postgresql" and importlib.util.find_spec("psycopg") is None:
            raise NotImplementedError("psycopg is not installed in this environment")
        if per_request and impl == "upstream":
            raise NotImplementedError("upstream has no per-request DB metrics")
        apps = [] if impl == "bare" else ["django_prometheus"]
        if per_request:
            return {
                "DATABASES": {"default": _database(vendor, impl)},
                "INSTALLED_APPS": apps,
                "USE_TZ": True,
                "PROMETHEUS_REQUEST_DB_METRICS": impl != "bare",
            }
        if not noswap:
            return {"DATABASES": {"default": _database(vendor, impl)}, "INSTALLED_APPS": apps, "USE_TZ": True}
        if impl == "upstream":
            raise NotImplementedError("upstream instruments only through ENGINE")
        # Django's own ENGINE for every impl; ours through PROMETHEUS_INSTRUMENT_DATABASES.
        return {
            "DATABASES": {"default": _database(vendor, "bare")},
            "INSTALLED_APPS": apps,
            "USE_TZ": True,
            "PROMETHEUS_INSTRUMENT_DATABASES": impl != "bare",
        }

    return settings


def _connection() -> Any:
    from django.db import connections

    connection = connections["default"]
    try:
        connection.ensure_connection()
    except Exception as exc:  # a server that is down is a skip with its reason, not a crash
        raise NotImplementedError(f"cannot connect: {exc}") from exc
    return connection


def _build_reused(impl: str) -> Op:
    # The DB-API level call a query goes through, without Django's per-query debug
    # wrapper choice: Django's own CursorWrapper on one cursor, kept open.
    cursor = _connection().cursor()
    return partial(cursor.execute, SQL)


#: Queries per accounted request in the per-request cases: under REPEAT_THRESHOLD, so
#: "SELECT 1" stays a tracked statement (the dearer path) and is never flagged.
QUERIES_PER_REQUEST = 4


def _build_reused_in_request(impl: str) -> Op:
    # One query of a request being accounted (PROMETHEUS_REQUEST_DB_METRICS): the
    # request's begin and end, as the middleware calls them, every 4th query.
    query = _build_reused(impl)
    if impl == "bare":
        return query
    from django_prometheus.db import per_request

    state = {"token": per_request.begin(), "n": 0}

    def op() -> None:
        query()
        state["n"] += 1
        if state["n"] == QUERIES_PER_REQUEST:
            per_request.end(state["token"], "bench/<int:pk>")
            state["token"], state["n"] = per_request.begin(), 0

    return op


def _hook_settings(impl: str) -> dict[str, Any]:
    if impl == "upstream":
        raise NotImplementedError("a yardstick of Django's hook, not an instrumentation")
    return {"DATABASES": {"default": _database("sqlite", "bare")}, "INSTALLED_APPS": [], "USE_TZ": True}


def _build_reused_with_hook(impl: str) -> Op:
    # Django's own price of ``connection.execute_wrappers`` (the hook the no-swap path uses):
    # every row but bare runs one do-nothing wrapper, and nothing of ours.
    connection = _connection()
    if impl != "bare":

        def passthrough(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
            return execute(sql, params, many, context)

        connection.execute_wrappers.append(passthrough)
    return _build_reused(impl)


def _build_new_cursor(impl: str) -> Op:
    connection = _connection()

    def op() -> None:
        with connection.cursor() as cursor:
            cursor.execute(SQL)

    return op


DB_SQLITE_REUSED = Case("db_sqlite_execute_reused_cursor", _settings_for("sqlite"), _build_reused)
DB_SQLITE_NEW = Case("db_sqlite_execute_new_cursor", _settings_for("sqlite"), _build_new_cursor)
DB_PG_REUSED = Case("db_postgresql_execute_reused_cursor", _settings_for("postgresql"), _build_reused)
DB_PG_NEW = Case("db_postgresql_execute_new_cursor", _settings_for("postgresql"), _build_new_cursor)
# The no-swap path (stock ENGINE, PROMETHEUS_INSTRUMENT_DATABASES = True): compare its
# compiled/pure rows with the ENGINE cases' rows above.
DB_SQLITE_NOSWAP = Case(
    "db_sqlite_execute_reused_cursor_noswap", _settings_for("sqlite", True), _build_reused
)
DB_PG_NOSWAP = Case(
    "db_postgresql_execute_reused_cursor_noswap", _settings_for("postgresql", True), _build_reused
)
# A yardstick, not an instrumentation: one do-nothing execute wrapper on stock Django (its
# rows other than bare are identical). The noswap case's added cost minus this one is ours.
DB_SQLITE_HOOK = Case("db_sqlite_execute_reused_cursor_django_hook", _hook_settings, _build_reused_with_hook)
# Per-request accounting on (ENGINE path): compare with db_sqlite_execute_reused_cursor.
DB_SQLITE_REQUEST = Case(
    "db_sqlite_execute_reused_cursor_per_request",
    _settings_for("sqlite", per_request=True),
    _build_reused_in_request,
)
CASES = [
    DB_SQLITE_REUSED,
    DB_SQLITE_NEW,
    DB_PG_REUSED,
    DB_PG_NEW,
    DB_SQLITE_NOSWAP,
    DB_PG_NOSWAP,
    DB_SQLITE_HOOK,
    DB_SQLITE_REQUEST,
]


class SQLiteExecute:
    """``cursor.execute("SELECT 1")`` on in-memory SQLite per implementation (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.reused = prepare(DB_SQLITE_REUSED, impl)
        self.new_cursor = prepare(DB_SQLITE_NEW, impl)

    def time_execute_reused_cursor(self, impl: str) -> None:
        self.reused()

    def time_execute_new_cursor(self, impl: str) -> None:
        self.new_cursor()

    def peakmem_execute_new_cursor_10k(self, impl: str) -> None:
        # A new cursor per query must not leave anything behind (no class per cursor).
        for _ in range(10_000):
            self.new_cursor()


class PostgreSQLExecute:
    """The same on PostgreSQL (psycopg 3), when the server of scripts/services.sh runs (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.reused = prepare(DB_PG_REUSED, impl)
        self.new_cursor = prepare(DB_PG_NEW, impl)

    def time_execute_reused_cursor(self, impl: str) -> None:
        self.reused()

    def time_execute_new_cursor(self, impl: str) -> None:
        self.new_cursor()


class NoSwapExecute:
    """``cursor.execute("SELECT 1")``, Django's own ENGINE, ``PROMETHEUS_INSTRUMENT_DATABASES`` on (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.sqlite = prepare(DB_SQLITE_NOSWAP, impl)

    def time_sqlite_execute_reused_cursor(self, impl: str) -> None:
        self.sqlite()


class PerRequestExecute:
    """The same query inside a request that ``PROMETHEUS_REQUEST_DB_METRICS`` accounts (asv)."""

    params = IMPLS
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.sqlite = prepare(DB_SQLITE_REQUEST, impl)

    def time_sqlite_execute_reused_cursor(self, impl: str) -> None:
        self.sqlite()
