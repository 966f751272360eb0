"""Migration gauges: per connection, from ready() when enabled, safe under ASGI and without a database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from prometheus_client import REGISTRY

from django_prometheus.migrations import ExportMigrationsForDatabase, applied_migrations, unapplied_migrations

ROOT = Path(__file__).resolve().parent.parent


def gauges(alias: str) -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("django_migrations_applied_total", {"connection": alias}),
        REGISTRY.get_sample_value("django_migrations_unapplied_total", {"connection": alias}),
    )


@pytest.mark.django_db
def test_export_for_database_counts_applied_and_unapplied() -> None:
    connection = connections["default"]
    applied = len(MigrationRecorder(connection).applied_migrations())
    ExportMigrationsForDatabase("default", MigrationExecutor(connection))
    assert gauges("default") == (applied, 0)
    MigrationRecorder(connection).record_unapplied("testapp", "0001_initial")
    ExportMigrationsForDatabase("default", MigrationExecutor(connection))
    assert gauges("default") == (applied - 1, 1)


def test_gauges_keep_one_series_across_worker_processes() -> None:
    # In multiprocess mode every worker sets the same values: the max is the value, once.
    assert applied_migrations._multiprocess_mode == "max"
    assert unapplied_migrations._multiprocess_mode == "max"
    assert applied_migrations._name == "django_migrations_applied_total"
    assert unapplied_migrations._labelnames == ("connection",)


STARTUP = """
import asyncio, json, sys
import django
from django.conf import settings

databases, mode = json.loads(sys.argv[1]), sys.argv[2]
settings.configure(
    DATABASES=databases,
    INSTALLED_APPS=["django.contrib.contenttypes", "django_prometheus", "tests.testapp"],
    PROMETHEUS_EXPORT_MIGRATIONS=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
if mode == "migrate-contenttypes":
    settings.PROMETHEUS_EXPORT_MIGRATIONS = False
    django.setup()
    from django.core.management import call_command
    call_command("migrate", "contenttypes", verbosity=0)
    sys.exit(0)
if mode == "asgi":
    async def main():
        # An ASGI server that imports the app inside its running event loop.
        django.setup()
    asyncio.run(main())
else:
    django.setup()
from prometheus_client import REGISTRY
print(json.dumps({
    alias: [REGISTRY.get_sample_value(f"django_migrations_{kind}_total", {"connection": alias})
            for kind in ("applied", "unapplied")]
    for alias in databases or ["default"]
}))
"""


def start_app(databases: dict[str, Any], mode: str = "sync") -> dict[str, list[float | None]]:
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP, json.dumps(databases), mode],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "SynchronousOnlyOperation" not in proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]) if mode != "migrate-contenttypes" else {}


@pytest.fixture
def sqlite_file(tmp_path: Path) -> dict[str, Any]:
    return {
        "default": {"ENGINE": "django_prometheus.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }


def test_ready_exports_the_gauges_when_enabled(sqlite_file: dict[str, Any]) -> None:
    # contenttypes has 2 migrations, testapp 1; django_prometheus none.
    assert start_app(sqlite_file) == {"default": [0, 3]}
    start_app(sqlite_file, "migrate-contenttypes")
    assert start_app(sqlite_file) == {"default": [2, 1]}


def test_ready_under_a_running_event_loop_does_not_raise(sqlite_file: dict[str, Any]) -> None:
    start_app(sqlite_file, "migrate-contenttypes")
    assert start_app(sqlite_file, "asgi") == {"default": [2, 1]}


def test_every_database_gets_its_own_series(sqlite_file: dict[str, Any], tmp_path: Path) -> None:
    databases = {
        **sqlite_file,
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "o")},
    }
    start_app(sqlite_file, "migrate-contenttypes")
    assert start_app(databases) == {"default": [2, 1], "other": [0, 3]}


def test_no_databases_means_no_gauges_and_no_error() -> None:
    assert start_app({}) == {"default": [None, None]}


def test_an_unreachable_database_does_not_stop_the_app() -> None:
    dead = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/nonexistent-dir/for/dp/db.sqlite3"}}
    assert start_app(dead) == {"default": [None, None]}
