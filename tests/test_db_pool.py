"""Connection pool gauges (Django 5.1+ PostgreSQL ``OPTIONS["pool"]``), read from a real pool at scrape."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus.exposition import render
from tests.test_db import fresh_wrapper

ROOT = Path(__file__).resolve().parent.parent


def scrape() -> dict[tuple[str, str, str], float]:
    """(family, alias, state-or-bound) -> value, from the bytes a scrape returns."""
    out = {}
    for family in text_string_to_metric_families(render(REGISTRY).decode()):
        if family.name in ("django_db_pool_connections", "django_db_pool_size"):
            for s in family.samples:
                out[family.name, s.labels["alias"], s.labels.get("state") or s.labels["bound"]] = s.value
    return out


@pytest.mark.django_db(databases=["postgresql_pool"])
def test_twenty_concurrent_requests_on_a_pool_of_four_show_waiting(require_service: Any) -> None:
    require_service("postgresql")
    alias = "postgresql_pool4"
    pool_options = {"min_size": 1, "max_size": 4, "timeout": 30}

    def wrapper() -> Any:
        return fresh_wrapper("postgresql_pool", alias, OPTIONS={"pool": pool_options})

    errors: list[BaseException] = []
    start = threading.Barrier(21)

    def request() -> None:
        w = wrapper()
        try:
            start.wait()
            with w.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(0.3)")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            w.close()  # back to the pool

    threads = [threading.Thread(target=request) for _ in range(20)]
    for t in threads:
        t.start()
    start.wait()
    # Scrape while the load runs: the pool grows to its maximum as requests queue for it.
    mid: dict[Any, float] = {}
    most_in_use = 0.0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.is_alive() for t in threads):
        now = scrape()
        most_in_use = max(most_in_use, now.get(("django_db_pool_connections", alias, "in_use"), 0))
        if not mid and now.get(("django_db_pool_connections", alias, "waiting"), 0) > 0:
            mid = now
        if mid and most_in_use == 4:
            break
        time.sleep(0.01)
    for t in threads:
        t.join(30)
    after = scrape()
    wrapper().close_pool()
    assert not errors
    assert mid[("django_db_pool_connections", alias, "waiting")] > 0
    assert 1 <= mid[("django_db_pool_connections", alias, "in_use")] <= 4
    assert most_in_use == 4  # never more than the pool's max_size
    assert mid[("django_db_pool_size", alias, "min")] == 1
    assert mid[("django_db_pool_size", alias, "max")] == 4
    # Load over: nothing waits, nothing is checked out, the opened connections are idle.
    assert after[("django_db_pool_connections", alias, "waiting")] == 0
    assert after[("django_db_pool_connections", alias, "in_use")] == 0
    assert 1 <= after[("django_db_pool_connections", alias, "idle")] <= 4
    # A closed pool is no longer reported.
    assert not [k for k in scrape() if k[1] == alias]


@pytest.mark.django_db(databases=["postgresql_pool"])
def test_the_pool_of_a_configured_alias_is_reported(require_service: Any) -> None:
    require_service("postgresql")
    with connections["postgresql_pool"].cursor() as cursor:
        cursor.execute("SELECT 1")
        now = scrape()
        assert now[("django_db_pool_connections", "postgresql_pool", "in_use")] >= 1
    assert now[("django_db_pool_size", "postgresql_pool", "max")] == 2


NO_POOL = r"""
import django
from django.conf import settings
settings.configure(
    DATABASES={"default": {"ENGINE": "django_prometheus.db.backends.sqlite3", "NAME": ":memory:"}},
    INSTALLED_APPS=["django_prometheus"],
)
django.setup()
from django.db import connection
from prometheus_client import generate_latest
with connection.cursor() as c:
    c.execute("SELECT 1")
print(generate_latest().decode())
"""


def test_the_families_are_absent_when_no_pool_is_configured() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_POOL], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert 'django_db_execute_total{alias="default",vendor="sqlite"} 1.0' in proc.stdout
    assert "django_db_pool" not in proc.stdout
