"""Migration gauges: per connection, from ready() when enabled, safe under ASGI and without a database."""

from __future__ import annotations

import json
import os
import socket
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


def test_gauges_have_upstreams_names_and_labels() -> None:
    assert applied_migrations._name == "django_migrations_applied_total"
    assert unapplied_migrations._labelnames == ("connection",)


WORKERS = """
import os, sys, warnings
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_prometheus"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
)
django.setup()
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django_prometheus.migrations import ExportMigrationsForDatabase

call_command("migrate", verbosity=0)
recorder = MigrationRecorder(connection)

def worker(unapplied):
    # One worker process of a deploy: sees the schema as it is, exports, exits.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        connection.close()
        if unapplied:
            recorder.record_unapplied("auth", "0012_alter_user_first_name_max_length")
        else:
            recorder.record_applied("auth", "0012_alter_user_first_name_max_length")
        ExportMigrationsForDatabase("default", MigrationExecutor(connection))
        os._exit(0)
    os.waitpid(pid, 0)

worker(unapplied=True)   # the old release's worker, before migrate; its file stays
worker(unapplied=False)  # the new release's worker, after migrate
"""


def test_multiprocess_gauges_show_the_newest_value_once_per_connection(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run(
        [sys.executable, "-c", WORKERS, str(tmp_path / "db.sqlite3")], env=env, check=True, timeout=120
    )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    samples = [
        s for m in registry.collect() for s in m.samples if s.name == "django_migrations_unapplied_total"
    ]
    # One series per connection, not one per worker; the newest value, not the dead worker's larger one.
    assert [(s.labels, s.value) for s in samples] == [({"connection": "default"}, 0.0)]


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
    ROOT_URLCONF="django_prometheus.urls",
    ALLOWED_HOSTS=["*"],
    PROMETHEUS_METRICS_EXPORT_PORT=int(sys.argv[3]) if mode == "port" else None,
    PROMETHEUS_METRICS_EXPORT_ADDRESS="127.0.0.1",
)
from prometheus_client import REGISTRY

def gauges():
    return {
        alias: [REGISTRY.get_sample_value(f"django_migrations_{kind}_total", {"connection": alias})
                for kind in ("applied", "unapplied")]
        for alias in databases or ["default"]
    }

if mode.startswith("migrate"):
    django.setup()
    from django.core.management import call_command
    call_command("migrate", *mode.split()[1:], verbosity=0)  # its post_migrate reads the gauges
    print(json.dumps({"before": gauges(), "after": gauges(), "status": 0}))
    sys.exit(0)
if mode == "asgi":
    async def main():
        # An ASGI server that imports the app inside its running event loop, then a first request.
        django.setup()
        before = gauges()
        from django.test import AsyncClient
        return before, (await AsyncClient().get("/metrics")).status_code
    before, status = asyncio.run(main())
elif mode == "port":
    django.setup()
    before = gauges()
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[3]}/metrics", timeout=30) as r:
        status = r.status
        assert b'django_migrations_applied_total{connection="default"}' in r.read()
else:
    django.setup()
    before = gauges()
    from django.test import Client
    status = Client().get("/metrics").status_code
print(json.dumps({"before": before, "after": gauges(), "status": status}))
"""


def run_app(databases: dict[str, Any], mode: str = "sync") -> dict[str, Any]:
    """Start Django in a subprocess that turns Django's RuntimeWarnings into errors; its gauges as JSON."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-We::RuntimeWarning", "-c", STARTUP, json.dumps(databases), mode, str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "SynchronousOnlyOperation" not in proc.stderr
    assert "during app initialization" not in proc.stderr, proc.stderr
    assert "cannot export" not in proc.stderr or "nonexistent" in json.dumps(databases), proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def start_app(databases: dict[str, Any], mode: str = "sync") -> dict[str, list[float | None]]:
    """The gauges after the first request; nothing is read before it (not in ready())."""
    result = run_app(databases, mode)
    if not mode.startswith("migrate"):
        assert result["status"] == 200
        assert all(v == [None, None] for v in result["before"].values()), result
    return result["after"]


@pytest.fixture
def sqlite_file(tmp_path: Path) -> dict[str, Any]:
    return {
        "default": {"ENGINE": "django_prometheus.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }


def test_ready_exports_the_gauges_when_enabled(sqlite_file: dict[str, Any]) -> None:
    # contenttypes has 2 migrations, testapp 1; django_prometheus none.
    assert start_app(sqlite_file) == {"default": [0, 3]}
    start_app(sqlite_file, "migrate contenttypes")
    assert start_app(sqlite_file) == {"default": [2, 1]}


def test_ready_under_a_running_event_loop_does_not_raise(sqlite_file: dict[str, Any]) -> None:
    start_app(sqlite_file, "migrate contenttypes")
    assert start_app(sqlite_file, "asgi") == {"default": [2, 1]}


def test_every_database_gets_its_own_series(sqlite_file: dict[str, Any], tmp_path: Path) -> None:
    databases = {
        **sqlite_file,
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "o")},
    }
    start_app(sqlite_file, "migrate contenttypes")
    assert start_app(databases) == {"default": [2, 1], "other": [0, 3]}


def test_no_databases_means_no_gauges_and_no_error() -> None:
    assert start_app({}) == {"default": [None, None]}


def test_an_unreachable_database_does_not_stop_the_app() -> None:
    dead = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/nonexistent-dir/for/dp/db.sqlite3"}}
    assert start_app(dead) == {"default": [None, None]}


def test_migrate_reads_the_gauges_through_post_migrate(sqlite_file: dict[str, Any]) -> None:
    assert start_app(sqlite_file, "migrate contenttypes") == {"default": [2, 1]}
    assert start_app(sqlite_file, "migrate") == {"default": [3, 0]}


def test_management_commands_print_no_database_warning(tmp_path: Path) -> None:
    database = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db")}}
    (tmp_path / "dp_check_settings.py").write_text(
        "INSTALLED_APPS = ['django.contrib.contenttypes', 'django_prometheus']\n"
        f"DATABASES = {database!r}\n"
        "PROMETHEUS_EXPORT_MIGRATIONS = True\n"
        "DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}", "DJANGO_SETTINGS_MODULE": "dp_check_settings"}
    for command in (["check"], ["migrate", "-v0"], ["showmigrations"]):
        proc = subprocess.run(
            [sys.executable, "-W", "error::RuntimeWarning", "-m", "django", *command],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "during app initialization" not in proc.stderr, (command, proc.stderr)
        assert "cannot export" not in proc.stderr, (command, proc.stderr)


def test_a_first_port_scrape_reads_the_gauges(sqlite_file: dict[str, Any]) -> None:
    start_app(sqlite_file, "migrate contenttypes")
    assert start_app(sqlite_file, "port") == {"default": [2, 1]}
