"""Instrumented database backends against real SQLite, PostgreSQL (+pool, PostGIS), MariaDB, SpatiaLite."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.utils import load_backend
from django_prometheus._core import _db
from prometheus_client import REGISTRY

from django_prometheus.db import common
from tests.db_settings import CAN_LOAD_SQLITE_EXTENSIONS
from tests.testapp.models import Dog, Lawn, Row

# alias -> (vendor label, Django's own backend on the same server, service to require)
ALIASES: dict[str, tuple[str, str | None, str | None]] = {
    "sqlite": ("sqlite", "sqlite_bare", None),
    "postgresql": ("postgresql", "postgresql_bare", "postgresql"),
    "postgresql_pool": ("postgresql", "postgresql_bare", "postgresql"),
    "postgis": ("postgresql", "postgresql_bare", "postgresql"),
    "mysql": ("mysql", "mysql_bare", "mysql"),
}
if CAN_LOAD_SQLITE_EXTENSIONS:
    ALIASES["spatialite"] = ("sqlite", "sqlite_bare", None)

SAMPLES = {
    "django_db_new_connections_total": "connections",
    "django_db_new_connection_errors_total": "connection_errors",
    "django_db_execute_total": "execute",
    "django_db_execute_many_total": "execute_many",
    "django_db_query_duration_seconds_count": "duration_count",
}


def sample(name: str, alias: str, vendor: str, **extra: str) -> float:
    return REGISTRY.get_sample_value(name, {"alias": alias, "vendor": vendor, **extra}) or 0.0


class Delta:
    """The change of every DB sample of one (alias, vendor) since creation; errors as ``errors:<type>``."""

    def __init__(self, alias: str, vendor: str) -> None:
        self.alias, self.vendor = alias, vendor
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        from django_prometheus.db import metrics

        now: dict[str, float] = {}
        for family in (
            metrics.connections_total,
            metrics.connection_errors_total,
            metrics.execute_total,
            metrics.execute_many_total,
            metrics.errors_total,
            metrics.query_duration_seconds,
        ):
            for metric in family.collect():
                for s in metric.samples:
                    if s.labels.get("alias") != self.alias or s.labels.get("vendor") != self.vendor:
                        continue
                    if s.name == "django_db_errors_total":
                        now[f"errors:{s.labels['type']}"] = s.value
                    elif s.name in SAMPLES:
                        now[SAMPLES[s.name]] = s.value
        return now

    def __call__(self) -> dict[str, float]:
        now = self._now()
        return {k: v - self.before.get(k, 0.0) for k, v in now.items() if v != self.before.get(k, 0.0)}


def each_alias(with_bare: bool = False) -> Any:
    params = []
    for alias, (vendor, bare, _service) in ALIASES.items():
        databases = [alias, bare] if with_bare and bare else [alias]
        params.append(pytest.param(alias, vendor, marks=pytest.mark.django_db(databases=databases), id=alias))
    return pytest.mark.parametrize(("alias", "vendor"), params)


@pytest.fixture(autouse=True)
def _servers(request: pytest.FixtureRequest, require_service: Any) -> None:
    alias = request.node.callspec.params.get("alias") if hasattr(request.node, "callspec") else None
    service = ALIASES.get(alias, (None, None, None))[2] if alias else None
    if service:
        require_service(service)


@each_alias()
def test_execute_counts_each_statement_and_its_duration(alias: str, vendor: str) -> None:
    delta = Delta(alias, vendor)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.execute("SELECT %s", [2])
        assert cursor.fetchone()[0] == 2
    assert delta() == {"execute": 2, "duration_count": 2}


@each_alias()
def test_cursor_classes_are_made_once_per_alias_not_per_cursor(alias: str, vendor: str) -> None:
    with connections[alias].cursor() as first, connections[alias].cursor() as second:
        assert type(first) is type(second)
        assert type(first)._prometheus_exporting
        assert type(first)._prometheus_cells is common.DBCells.for_labels(alias, vendor)
        # Counting is Django's cursor wrapper's business: the driver's cursor is never touched.
        assert not getattr(type(first.cursor), "_prometheus_exporting", False)


@each_alias()
def test_executemany_counts_one_per_parameter_set(alias: str, vendor: str) -> None:
    delta = Delta(alias, vendor)
    with connections[alias].cursor() as cursor:
        cursor.executemany("INSERT INTO testapp_lawn (location) VALUES (%s)", [("a",), ("b",), ("c",)])
    assert delta() == {"execute": 3, "execute_many": 3, "duration_count": 1}
    assert sorted(Lawn.objects.using(alias).values_list("location", flat=True)) == ["a", "b", "c"]


class OneShot:
    """An iterable that can be iterated once only, like a generator, but says so loudly."""

    def __init__(self, items: list[tuple[str]]) -> None:
        self.items, self.iterations = items, 0

    def __iter__(self) -> Any:
        self.iterations += 1
        if self.iterations > 1:
            raise AssertionError("parameter sets iterated twice")
        return iter(self.items)


@each_alias()
def test_executemany_takes_a_generator_and_consumes_it_once(alias: str, vendor: str) -> None:
    # docs/install.md, What differs, 6: any iterable of parameter sets, counted without a second pass.
    delta = Delta(alias, vendor)
    params = OneShot([(f"g{i}",) for i in range(4)])
    with connections[alias].cursor() as cursor:
        cursor.executemany("INSERT INTO testapp_lawn (location) VALUES (%s)", params)
        cursor.executemany("INSERT INTO testapp_lawn (location) VALUES (%s)", ((f"h{i}",) for i in range(2)))
    assert params.iterations == 1
    assert delta() == {"execute": 6, "execute_many": 6, "duration_count": 2}
    assert Lawn.objects.using(alias).count() == 6


def failing(alias: str, statement: Any) -> tuple[dict[str, float], BaseException]:
    """Run ``statement(cursor)`` (which fails) in a savepoint; return the metric changes and the error."""
    from django.db import DatabaseError

    vendor = ALIASES[alias][0]
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        delta = Delta(alias, vendor)
        with pytest.raises(DatabaseError) as raised:
            statement(cursor)
        changes = delta()  # before the rollback to the savepoint, which is a statement too
        transaction.set_rollback(True, using=alias)
    return changes, raised.value


def driver_error_name(exc: BaseException) -> str:
    # Django re-raises the driver's exception as its own; the label is the driver's class name.
    assert exc.__cause__ is not None
    return type(exc.__cause__).__name__


@each_alias()
def test_errors_are_counted_by_type_and_still_raised(alias: str, vendor: str) -> None:
    changes, exc = failing(alias, lambda c: c.execute("SELECT * FROM no_such_table_here"))
    assert changes == {"execute": 1, "duration_count": 1, f"errors:{driver_error_name(exc)}": 1}


@each_alias()
def test_errors_of_executemany_are_counted(alias: str, vendor: str) -> None:
    from django.db import IntegrityError

    Dog.objects.using(alias).create(name="rex")
    sql = "INSERT INTO testapp_dog (name) VALUES (%s)"
    changes, exc = failing(alias, lambda c: c.executemany(sql, [("a",), ("rex",)]))
    assert isinstance(exc, IntegrityError)
    name = driver_error_name(exc)
    assert changes == {"execute": 2, "execute_many": 2, "duration_count": 1, f"errors:{name}": 1}


@each_alias()
def test_errors_of_a_generator_executemany_count_the_sets_consumed(alias: str, vendor: str) -> None:
    Dog.objects.using(alias).create(name="rex")
    sql = "INSERT INTO testapp_dog (name) VALUES (%s)"
    params = ((name,) for name in ["a", "rex", "never"])
    changes, exc = failing(alias, lambda c: c.executemany(sql, params))
    consumed = changes["execute"]
    name = driver_error_name(exc)
    assert changes == {
        "execute": consumed,
        "execute_many": consumed,
        "duration_count": 1,
        f"errors:{name}": 1,
    }
    # The driver stops at (or, batching, after reading) the duplicate: never more than it was given.
    assert 2 <= consumed <= 3
    assert consumed + len(list(params)) == 3


def fresh_wrapper(alias: str, new_alias: str, **changes: Any) -> Any:
    """A new, unconnected DatabaseWrapper of ``alias``' engine under another alias."""
    settings_dict = {**connections[alias].settings_dict, **changes}
    return load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, new_alias)


@each_alias()
def test_a_new_connection_is_counted(alias: str, vendor: str) -> None:
    wrapper = fresh_wrapper(alias, f"{alias}_fresh")
    delta = Delta(f"{alias}_fresh", vendor)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        wrapper.close()
        if alias == "postgresql_pool":
            wrapper.close_pool()
    changes = delta()
    # PostgreSQL may run set-up statements (time zone) on a new connection: they count too.
    assert changes.pop("execute") == changes.pop("duration_count") >= 1
    assert changes == {"connections": 1}


DEAD = {
    "sqlite": {"NAME": "/nonexistent-dir/for/django-prometheus/db.sqlite3"},
    "spatialite": {"NAME": "/nonexistent-dir/for/django-prometheus/db.sqlite3"},
    "postgresql": {"PORT": "1"},
    "postgis": {"PORT": "1"},
    "postgresql_pool": {"PORT": "1", "OPTIONS": {"pool": {"min_size": 1, "timeout": 1}}},
    "mysql": {"PORT": "1"},
}


@each_alias()
def test_a_failed_connection_is_counted_and_raised(alias: str, vendor: str) -> None:
    from django.db import OperationalError

    new_alias = f"{alias}_dead"
    wrapper = fresh_wrapper(alias, new_alias, **DEAD[alias])
    delta = Delta(new_alias, vendor)
    try:
        with pytest.raises(OperationalError):
            wrapper.ensure_connection()
    finally:
        if alias == "postgresql_pool":
            wrapper.close_pool()
    assert delta() == {"connections": 1, "connection_errors": 1}


@pytest.mark.django_db(databases=[a for a in ALIASES])
def test_several_aliases_at_once_keep_their_own_series(require_service: Any) -> None:
    require_service("postgresql")
    require_service("mysql")
    deltas = {alias: Delta(alias, vendor) for alias, (vendor, _b, _s) in ALIASES.items()}
    for n, alias in enumerate(ALIASES, start=1):
        with connections[alias].cursor() as cursor:
            for _ in range(n):
                cursor.execute("SELECT 1")
    for n, alias in enumerate(ALIASES, start=1):
        assert deltas[alias]() == {"execute": n, "duration_count": n}


# Django 6.1 renamed savepoint() to savepoint_create().
savepoint_create = getattr(transaction, "savepoint_create", None) or transaction.savepoint


def rows() -> list[Row]:
    at = datetime.datetime(2024, 2, 29, 13, 14, 15, 123000, tzinfo=datetime.timezone.utc)
    return [
        Row(i=1, big=2**40, f=1.5, amount=decimal.Decimal("12.345"), s="ascii", txt="x" * 300, flag=True,
            moment=at, day=datetime.date(2024, 2, 29), uid=uuid.UUID(int=7), blob=b"\x00\x01\xff"),
        Row(i=2, s="ünïcødé €", txt="", flag=False),
        Row(i=3, big=None, f=None, amount=None, flag=None, moment=None, day=None, uid=None, blob=None),
    ]  # fmt: skip


RAW_QUERIES = [
    ("SELECT 1, 'x', NULL, 2.5", None),
    ("SELECT i, s, amount, moment, day, uid, flag FROM testapp_row WHERE i >= %s ORDER BY i", [2]),
    ("SELECT COUNT(*), SUM(i) FROM testapp_row", None),
]


def snapshot(alias: str) -> dict[str, Any]:
    """What a caller sees from the ORM and from raw cursors on ``alias``."""
    out: dict[str, Any] = {}
    out["orm"] = [
        tuple(getattr(r, f.attname) for f in Row._meta.concrete_fields if f.attname != "id")
        for r in Row.objects.using(alias).order_by("i")
    ]
    out["orm"] = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in t) for t in out["orm"]]
    out["values"] = list(Row.objects.using(alias).order_by("-i").values_list("i", "s", "flag"))
    out["iterator"] = [r.i for r in Row.objects.using(alias).order_by("i").iterator(chunk_size=2)]
    with connections[alias].cursor() as cursor:
        for sql, params in RAW_QUERIES:
            cursor.execute(sql, params)
            out[sql] = (
                [d[0] for d in cursor.description],
                cursor.fetchall(),
            )
        cursor.execute("UPDATE testapp_row SET s = %s WHERE i < %s", ["u", 3])
        out["rowcount"] = cursor.rowcount
        cursor.execute("SELECT s FROM testapp_row ORDER BY i")
        out["fetchone"] = cursor.fetchone()
        out["fetchmany"] = cursor.fetchmany(5)
    out["updated"] = Row.objects.using(alias).filter(s="u").update(s="v")
    out["deleted"] = Row.objects.using(alias).filter(i=3).delete()
    return out


@each_alias(with_bare=True)
def test_results_are_exactly_those_of_djangos_own_backend(alias: str, vendor: str) -> None:
    bare = ALIASES[alias][1]
    for db in (alias, bare):
        Row.objects.using(db).bulk_create(rows())
    ours, theirs = snapshot(alias), snapshot(bare)
    assert ours == theirs
    assert ours["orm"][0][-1] == b"\x00\x01\xff"


@each_alias()
def test_transactions_and_savepoints_are_unaffected(alias: str, vendor: str) -> None:
    dogs = Dog.objects.using(alias)
    with transaction.atomic(using=alias):
        dogs.create(name="outer")
        try:
            with transaction.atomic(using=alias):
                dogs.create(name="inner")
                assert dogs.count() == 2
                raise RuntimeError("roll back to the savepoint")
        except RuntimeError:
            pass
        assert list(dogs.values_list("name", flat=True)) == ["outer"]
        sid = savepoint_create(using=alias)
        dogs.create(name="kept")
        transaction.savepoint_commit(sid, using=alias)
        sid = savepoint_create(using=alias)
        dogs.create(name="dropped")
        transaction.savepoint_rollback(sid, using=alias)
    assert sorted(dogs.values_list("name", flat=True)) == ["kept", "outer"]
    try:
        with transaction.atomic(using=alias):
            dogs.create(name="gone")
            raise RuntimeError
    except RuntimeError:
        pass
    assert not dogs.filter(name="gone").exists()
    assert connections[alias].in_atomic_block  # the test's own transaction is still open


@pytest.mark.parametrize(
    ("alias", "vendor"),
    [
        pytest.param(alias, ALIASES[alias][0], marks=pytest.mark.django_db(databases=[alias]), id=alias)
        for alias in ALIASES
        if ALIASES[alias][0] == "postgresql"
    ],
)
def test_server_side_cursors_are_counted(alias: str, vendor: str) -> None:
    Row.objects.using(alias).bulk_create(rows())
    delta = Delta(alias, vendor)
    assert [r.i for r in Row.objects.using(alias).order_by("i").iterator(chunk_size=2)] == [1, 2, 3]
    assert delta() == {"execute": 1, "duration_count": 1}
    cursor = connections[alias].chunked_cursor()
    try:
        assert type(cursor)._prometheus_exporting
        assert not getattr(type(cursor.cursor), "_prometheus_exporting", False)
    finally:
        cursor.close()


@pytest.mark.django_db(databases=["postgresql_pool"], transaction=True)
def test_pooled_connections_are_instrumented_without_rewrapping(require_service: Any) -> None:
    from django.db.backends.postgresql.base import Cursor

    require_service("postgresql")
    connection = connections["postgresql_pool"]
    # The pool connects with Django's own factory: nothing of ours to redo per checkout.
    assert connection.pool.kwargs["cursor_factory"] is Cursor
    delta = Delta("postgresql_pool", "postgresql")
    for _ in range(3):
        connection.close()  # back to the pool; the next cursor checks one out again
        with connection.cursor() as cursor:
            assert type(cursor) is common.ExportingCursorWrapper(
                type(cursor).__mro__[1], "postgresql_pool", "postgresql"
            )
            cursor.execute("SELECT 1")
    changes = delta()
    assert changes.pop("execute") == changes.pop("duration_count") >= 3
    assert changes == {"connections": 3}


def test_exporting_cursor_wrapper_returns_one_class_per_key() -> None:
    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    a = common.ExportingCursorWrapper(SQLiteCursorWrapper, "x", "sqlite")
    assert a is common.ExportingCursorWrapper(SQLiteCursorWrapper, "x", "sqlite")
    assert a is not common.ExportingCursorWrapper(SQLiteCursorWrapper, "y", "sqlite")
    assert issubclass(a, SQLiteCursorWrapper)


@pytest.mark.django_db(databases=["sqlite"])
def test_exporting_cursor_wrapper_returns_an_exporting_class_as_it_is() -> None:
    # Issue 23 item 3: upstream wraps again; a backend calling it on a class it did not create
    # must get no TypeError and no second layer (which would count every query twice).
    from django.db.backends.utils import CursorWrapper

    a = common.ExportingCursorWrapper(CursorWrapper, "sqlite", "sqlite")
    assert common.ExportingCursorWrapper(a, "sqlite", "sqlite") is a
    assert common.ExportingCursorWrapper(a, "other", "postgresql") is a

    class Custom(a):  # a backend's own subclass of an exporting class
        pass

    assert common.ExportingCursorWrapper(Custom, "sqlite", "sqlite") is Custom
    delta = Delta("sqlite", "sqlite")
    connection = connections["sqlite"]
    connection.ensure_connection()
    cursor = common.ExportingCursorWrapper(a, "sqlite", "sqlite")(connection.create_cursor(), connection)
    with cursor:
        cursor.execute("SELECT 1")
    assert delta() == {"execute": 1, "duration_count": 1}


def test_fast_path_matches_the_core_in_use() -> None:
    from django_prometheus._core import _cells

    assert _db.USE_EXTENSIONS is _cells.USE_EXTENSIONS


def test_exception_counter_by_type_counts_and_propagates() -> None:
    from django_prometheus.db import errors_total

    labels = {"alias": "ecbt", "vendor": "v"}
    with pytest.raises(KeyError):
        with common.ExceptionCounterByType(errors_total, extra_labels=labels):
            raise KeyError("x")
    with common.ExceptionCounterByType(errors_total, extra_labels=labels):
        pass
    assert sample("django_db_errors_total", "ecbt", "v", type="KeyError") == 1


GIS = {
    "postgis": "ST_AsText(ST_GeomFromText('POINT(1 2)'))",
    "spatialite": "AsText(GeomFromText('POINT(1 2)'))",
}


@pytest.mark.parametrize(
    ("alias", "vendor"),
    [
        pytest.param(alias, ALIASES[alias][0], marks=pytest.mark.django_db(databases=[alias]), id=alias)
        for alias in GIS
        if alias in ALIASES
    ],
)
def test_spatial_backends_run_spatial_sql_through_the_instrumented_cursor(alias: str, vendor: str) -> None:
    connection = connections[alias]
    assert connection.features.gis_enabled
    minimum = (3,) if alias == "postgis" else (4,)
    assert connection.ops.spatial_version >= minimum
    delta = Delta(alias, vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {GIS[alias]}")
        assert cursor.fetchone()[0] == "POINT(1 2)"
    assert delta() == {"execute": 1, "duration_count": 1}


PG_ALIASES = [alias for alias, (vendor, _b, _s) in ALIASES.items() if vendor == "postgresql"]


def on_postgresql(test: Any) -> Any:
    return pytest.mark.parametrize(
        ("alias", "vendor"),
        [pytest.param(a, "postgresql", marks=pytest.mark.django_db(databases=[a]), id=a) for a in PG_ALIASES],
    )(test)


def connected_with(alias: str, new_alias: str, options: dict[str, Any]) -> Any:
    """A fresh connection of ``alias``' engine with extra ``OPTIONS`` (pool options kept)."""
    wrapper = fresh_wrapper(
        alias, new_alias, OPTIONS={**connections[alias].settings_dict["OPTIONS"], **options}
    )
    wrapper.ensure_connection()
    return wrapper


def close(wrapper: Any) -> None:
    wrapper.close()
    if wrapper.settings_dict["OPTIONS"].get("pool"):
        wrapper.close_pool()


@on_postgresql
def test_server_side_binding_keeps_djangos_cursor_factory(alias: str, vendor: str) -> None:
    # Issue 9.7: Django (and its own tests) check the configured factory by identity.
    from django.db.backends.postgresql.base import ServerBindingCursor

    new_alias = f"{alias}_ssb"
    wrapper = connected_with(alias, new_alias, {"server_side_binding": True})
    try:
        assert wrapper.connection.cursor_factory is ServerBindingCursor
        if wrapper.pool is not None:
            assert wrapper.pool.kwargs["cursor_factory"] is ServerBindingCursor
        delta = Delta(new_alias, vendor)
        with wrapper.cursor() as cursor:
            assert type(cursor.cursor) is ServerBindingCursor
            cursor.execute("SELECT %s::int", [5])
            assert cursor.fetchone() == (5,)
        assert delta() == {"execute": 1, "duration_count": 1}
    finally:
        close(wrapper)


@on_postgresql
def test_a_users_cursor_factory_is_the_one_the_driver_uses(alias: str, vendor: str) -> None:
    from django.db.backends.postgresql.base import Cursor

    class MyCursor(Cursor):
        pass

    new_alias = f"{alias}_factory"
    wrapper = connected_with(alias, new_alias, {"cursor_factory": MyCursor})
    try:
        assert wrapper.connection.cursor_factory is MyCursor
        delta = Delta(new_alias, vendor)
        with wrapper.cursor() as cursor:
            assert type(cursor.cursor) is MyCursor
            cursor.execute("SELECT 1")
        assert delta() == {"execute": 1, "duration_count": 1}
    finally:
        close(wrapper)


@on_postgresql
def test_the_default_cursor_factory_is_djangos(alias: str, vendor: str) -> None:
    from django.db.backends.postgresql.base import Cursor

    connection = connections[alias]
    connection.ensure_connection()
    assert connection.connection.cursor_factory is Cursor


@on_postgresql
def test_upstreams_cursor_class_helper_is_importable_and_djangos(alias: str, vendor: str) -> None:
    # Custom backends written for upstream import it; ours never sets it as cursor_factory.
    from django.db.backends.postgresql.base import Cursor

    from django_prometheus.db.backends.common import get_postgres_cursor_class

    assert get_postgres_cursor_class() is Cursor
    connection = connections[alias]
    connection.ensure_connection()
    assert connection.connection.cursor_factory is Cursor


@pytest.mark.django_db(databases=["postgresql_bare"])
def test_a_custom_backend_on_djangos_wrapper_can_still_export_the_drivers_cursor(
    require_service: Any,
) -> None:
    # Upstream's pattern, in a backend of one's own built on Django's DatabaseWrapper: counted once.
    require_service("postgresql")
    from django_prometheus.db.backends.common import get_postgres_cursor_class

    wrapper = fresh_wrapper("postgresql_bare", "custom_backend")
    delta = Delta("custom_backend", "postgresql")
    try:
        wrapper.ensure_connection()
        wrapper.connection.cursor_factory = common.ExportingCursorWrapper(
            get_postgres_cursor_class(), "custom_backend", "postgresql"
        )
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT %s", [1])
            assert cursor.fetchone()[0] == 1
    finally:
        wrapper.close()
    assert delta() == {"execute": 1, "duration_count": 1}
