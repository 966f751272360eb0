"""PROMETHEUS_INSTRUMENT_DATABASES: upstream's DB families on stock ENGINEs, through Django's own hooks.

Against real SQLite, PostgreSQL (with and without a pool) and MariaDB. Each
scenario runs with the instrumentation off and on, and what Django does
(results, wrappers, captured queries, raised exceptions) must not differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.db.backends.signals import connection_created
from django.test import TransactionTestCase, modify_settings, override_settings
from django.test.utils import CaptureQueriesContext

from django_prometheus.db import common, instrument
from tests.db_request_project.views import seven_queries
from tests.test_db import Delta, fresh_wrapper
from tests.testapp.models import Dog

# stock-ENGINE alias -> (vendor, service)
BARE: dict[str, tuple[str, str | None]] = {
    "sqlite_bare": ("sqlite", None),
    "postgresql_bare": ("postgresql", "postgresql"),
    "postgresql_pool_bare": ("postgresql", "postgresql"),
    "mysql_bare": ("mysql", "mysql"),
}


def each_bare(test: Any) -> Any:
    params = [
        pytest.param(alias, vendor, marks=pytest.mark.django_db(databases=[alias]), id=alias)
        for alias, (vendor, _service) in BARE.items()
    ]
    return pytest.mark.parametrize(("alias", "vendor"), params)(test)


@pytest.fixture(autouse=True)
def _servers(request: pytest.FixtureRequest, require_service: Any) -> None:
    alias = request.node.callspec.params.get("alias") if hasattr(request.node, "callspec") else None
    service = BARE.get(alias, (None, None))[1] if alias else None
    if service:
        require_service(service)


def switch(value: Any) -> None:
    """Apply ``PROMETHEUS_INSTRUMENT_DATABASES = value`` as the app's ready() does."""
    with override_settings(PROMETHEUS_INSTRUMENT_DATABASES=value):
        instrument.instrument_databases()
    if not value:
        for connection in connections.all(initialized_only=True):
            instrument.uninstrument(connection)


@pytest.fixture
def instrumented() -> Iterator[Any]:
    """Every stock alias instrumented (and ours listed too: they must still count once)."""
    yield lambda value=True: switch(value)
    switch(False)


@each_bare
def test_a_view_running_seven_queries_records_seven(alias: str, vendor: str, instrumented: Any) -> None:
    instrumented()
    delta = Delta(alias, vendor)
    with CaptureQueriesContext(connections[alias]) as captured:
        result = seven_queries(alias)
    assert result == ["a", 1, ["a"], 1, True, 3, 7]
    assert len(captured) == 7
    assert delta() == {"execute": 7, "duration_count": 7}


@each_bare
def test_nothing_is_counted_when_off(alias: str, vendor: str) -> None:
    delta = Delta(alias, vendor)
    seven_queries(alias)
    assert delta() == {}
    assert connections[alias].execute_wrappers == []


@each_bare
def test_only_the_listed_aliases_are_instrumented(alias: str, vendor: str, instrumented: Any) -> None:
    others = [a for a in BARE if a != alias]
    instrumented(others)
    delta = Delta(alias, vendor)
    seven_queries(alias)
    assert delta() == {}
    assert connections[alias].execute_wrappers == []


@pytest.mark.parametrize(
    "alias",
    [
        pytest.param(a, marks=pytest.mark.django_db(databases=[a]), id=a)
        for a in ("sqlite", "postgresql", "postgresql_pool", "mysql")
    ],
)
def test_an_alias_on_our_engine_is_counted_once(alias: str, instrumented: Any, require_service: Any) -> None:
    if alias != "sqlite":
        require_service(alias.split("_")[0])
    instrumented()
    vendor = connections[alias].vendor
    delta = Delta(alias, vendor)
    result = seven_queries(alias)
    assert result[-1] == 7
    assert delta() == {"execute": 7, "duration_count": 7}
    assert connections[alias].execute_wrappers == []


@each_bare
def test_executemany_counts_one_per_parameter_set(alias: str, vendor: str, instrumented: Any) -> None:
    instrumented()
    delta = Delta(alias, vendor)
    with connections[alias].cursor() as cursor:
        sql = "INSERT INTO testapp_lawn (location) VALUES (%s)"
        cursor.executemany(sql, [("a",), ("b",), ("c",)])
        cursor.executemany(sql, ((v,) for v in "de"))
        cursor.execute("SELECT COUNT(*) FROM testapp_lawn")
        assert cursor.fetchone()[0] == 5
    assert delta() == {"execute": 6, "execute_many": 5, "duration_count": 3}


def behaviour(alias: str) -> dict[str, Any]:
    """What Django does for a caller, observable from outside: wrappers, logs, results, errors."""
    connection = connections[alias]
    calls: list[str] = []
    seen: dict[str, BaseException] = {}

    def outer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        calls.append(f"outer:{sql.split()[0]}")
        return execute(sql, params, many, context)

    def inner(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        calls.append(f"inner:{sql.split()[0]}")
        assert context["connection"] is connection
        try:
            return execute(sql, params, many, context)
        except BaseException as exc:
            seen["inner"] = exc
            raise

    out: dict[str, Any] = {}
    before = list(connection.execute_wrappers)
    with connection.execute_wrapper(outer), connection.execute_wrapper(inner):
        out["during"] = [w.__name__ for w in connection.execute_wrappers[len(before) :]]
        with CaptureQueriesContext(connection) as captured:
            out["result"] = seven_queries(alias)
            with transaction.atomic(using=alias):
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT * FROM no_such_table_here")
                except DatabaseError as exc:
                    out["same_error_object"] = exc is seen["inner"]
                    out["error"] = (type(exc), type(exc.__cause__))
                transaction.set_rollback(True, using=alias)
        # Savepoint names carry a process-wide counter: the same statement, another number.
        out["captured"] = [re.sub(r"s\d+_x\d+", "sid", q["sql"]) for q in captured.captured_queries]
    out["after"] = connection.execute_wrappers == before
    out["calls"] = calls
    # assertNumQueries is CaptureQueriesContext underneath; run it for real.
    TransactionTestCase().assertNumQueries(
        2, lambda: (Dog.objects.using(alias).count(), Dog.objects.using(alias).count()), using=alias
    )
    with override_settings(DEBUG=True):
        connection.queries_log.clear()
        Dog.objects.using(alias).filter(name="zz").exists()
        out["debug_queries"] = [q["sql"] for q in connection.queries]
    Dog.objects.using(alias).all().delete()
    return out


@each_bare
def test_django_behaves_exactly_as_without_it(alias: str, vendor: str, instrumented: Any) -> None:
    off = behaviour(alias)
    instrumented()
    delta = Delta(alias, vendor)
    on = behaviour(alias)
    for key in off:
        assert on[key] == off[key], key
    assert off["calls"][:2] == ["outer:INSERT", "inner:INSERT"]
    assert off["same_error_object"] is True and off["after"] is True
    counted = delta()
    # 7 + the failing SELECT + 2 counts + the DEBUG exists() + the delete(s): every statement Django ran.
    assert counted["execute"] == counted["duration_count"] >= 11
    name = off["error"][1].__name__
    assert counted[f"errors:{name}"] == 1


@each_bare
def test_a_new_connection_is_counted_with_the_real_alias_and_vendor(
    alias: str, vendor: str, instrumented: Any
) -> None:
    instrumented()
    new_alias = f"{alias}_fresh_noswap"
    wrapper = fresh_wrapper(alias, new_alias)
    delta = Delta(new_alias, vendor)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        wrapper.close()  # SQLite keeps an in-memory database open: no second connect there
        with wrapper.cursor() as cursor:  # a second connect (a pool checkout) keeps one wrapper
            cursor.execute("SELECT 1")
        assert len(wrapper.execute_wrappers) == 1
    finally:
        wrapper.close()
        if wrapper.settings_dict["OPTIONS"].get("pool"):
            wrapper.close_pool()
    connects = 1 if vendor == "sqlite" else 2
    # MySQL sets the isolation level through Django's cursor while connecting: before
    # connection_created the first time (not seen), with our wrapper in place the second.
    setup = 1 if vendor == "mysql" else 0
    assert delta() == {"connections": connects, "execute": 2 + setup, "duration_count": 2 + setup}


@pytest.mark.django_db(databases=["sqlite_bare"])
def test_a_wrapper_entered_before_the_first_connection_is_still_popped(instrumented: Any) -> None:
    # The user's block appends before connect() adds ours: ours goes first, so their pop() takes theirs.
    instrumented()
    wrapper = fresh_wrapper("sqlite_bare", "sqlite_bare_late")

    def theirs(execute: Any, *args: Any) -> Any:
        return execute(*args)

    with wrapper.execute_wrapper(theirs):
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert wrapper.execute_wrappers[1] is theirs
    assert wrapper.execute_wrappers == [
        common.DBCells.for_labels("sqlite_bare_late", "sqlite").execute_wrapper
    ]
    wrapper.close()


@pytest.mark.parametrize("value", ["default", ["nope"], [1], 3])
def test_a_bad_setting_is_a_clear_error(value: Any) -> None:
    with (
        override_settings(PROMETHEUS_INSTRUMENT_DATABASES=value),
        pytest.raises(ImproperlyConfigured) as raised,
    ):
        instrument.instrument_databases()
    assert "PROMETHEUS_INSTRUMENT_DATABASES" in str(raised.value)


@each_bare
def test_ready_running_again_counts_no_connection_that_did_not_happen(
    alias: str, vendor: str, instrumented: Any
) -> None:
    # Issue 23 item 8: modify_settings(INSTALLED_APPS=...) runs the app's ready() again, which
    # sweeps the open connections: one already instrumented is not a new connection.
    instrumented()
    connection = connections[alias]
    dogs = Dog.objects.using(alias)
    dogs.count()  # connected (and counted) before ready() runs again
    ours = common.DBCells.for_labels(alias, vendor).execute_wrapper
    receivers = len(connection_created.receivers)
    delta = Delta(alias, vendor)
    with (
        override_settings(PROMETHEUS_INSTRUMENT_DATABASES=True),
        modify_settings(INSTALLED_APPS={"append": "django.contrib.humanize"}),
    ):
        assert len(connection_created.receivers) == receivers
        dogs.count()
    dogs.count()
    assert delta() == {"execute": 2, "duration_count": 2}
    assert [w for w in connection.execute_wrappers if w is ours] == [ours]


@each_bare
def test_code_inspecting_execute_wrappers_sees_ours_first_and_can_tell_it(
    alias: str, vendor: str, instrumented: Any
) -> None:
    # What Django's own ExecuteWrapperTests.test_wrapper_connection_specific sees, documented.
    instrumented()
    connection = connections[alias]
    connection.ensure_connection()

    def theirs(execute: Any, *args: Any) -> Any:
        return execute(*args)

    with connection.execute_wrapper(theirs):
        assert connection.execute_wrappers[-1] is theirs
        assert instrument.is_instrumentation(connection.execute_wrappers[0])
        assert [w for w in connection.execute_wrappers if not instrument.is_instrumentation(w)] == [theirs]
    assert not instrument.is_instrumentation(theirs)
    assert [w for w in connection.execute_wrappers if not instrument.is_instrumentation(w)] == []


@each_bare
def test_switching_off_leaves_djangos_own_methods_on_the_connection(alias: str, vendor: str) -> None:
    connection = connections[alias]
    switch(True)
    Dog.objects.using(alias).count()
    assert "_commit" in connection.__dict__  # BEGIN/COMMIT/ROLLBACK accounted while on
    switch(False)
    patched = {"get_new_connection", "_set_autocommit", "_commit", "_rollback", "_close", "close_pool"}
    assert not patched & set(connection.__dict__)
    assert "create_connection" not in connections.__dict__
    assert connection.execute_wrappers == []
