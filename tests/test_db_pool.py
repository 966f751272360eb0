"""Connection pool gauges (Django 5.1+ PostgreSQL ``OPTIONS["pool"]``), read from a real pool at scrape."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus.text_format import render
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


# Issue 27 item 4: the pool's own counters, read at scrape.

COUNTERS = (
    "django_db_pool_requests_total",
    "django_db_pool_wait_seconds_total",
    "django_db_pool_timeouts_total",
    "django_db_pool_connections_lost_total",
)


def pool_counters(alias: str) -> dict[str, float]:
    out = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(render(REGISTRY).decode()):
        for s in family.samples:
            if s.name in COUNTERS and s.labels == {"alias": alias}:
                out[s.name] = s.value
    return out


class PoolDelta:
    def __init__(self, alias: str) -> None:
        self.alias, self.before = alias, pool_counters(alias)

    def __call__(self) -> dict[str, float]:
        now = pool_counters(self.alias)
        return {k: now[k] - self.before[k] for k in COUNTERS}


def hold_while(make: Any, held: threading.Event, release: threading.Event) -> threading.Thread:
    """A thread that checks a connection out of ``make()``'s pool and keeps it until ``release``."""

    def run() -> None:
        wrapper = make()  # a DatabaseWrapper is used in the thread that made it
        try:
            wrapper.ensure_connection()
            held.set()
            release.wait(30)
        finally:
            wrapper.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(30)
    return thread


@contextmanager
def one_connection_held(
    alias: str, timeout: float
) -> Iterator[tuple[Any, PoolDelta, threading.Event, threading.Thread]]:
    """A pool of one connection for ``alias``, that connection held by a thread until ``release``.

    Yields a second wrapper on the pool (its checkout waits up to ``timeout`` seconds), the pool
    counters' delta from before the pool existed, ``release`` and the holding thread; on exit the
    thread gives its connection back and the pool is closed.
    """

    def wrapper() -> Any:
        options = {"pool": {"min_size": 1, "max_size": 1, "timeout": timeout}}
        return fresh_wrapper("postgresql_pool", alias, OPTIONS=options)

    delta = PoolDelta(alias)
    held, release = threading.Event(), threading.Event()
    holder = hold_while(wrapper, held, release)
    other = wrapper()
    try:
        yield other, delta, release, holder
    finally:
        release.set()
        holder.join(30)
        other.close()
        other.close_pool()


@pytest.mark.django_db(databases=["postgresql_pool"])
def test_a_request_that_waits_then_gets_a_connection_counts_its_wait(require_service: Any) -> None:
    require_service("postgresql")
    with one_connection_held("postgresql_pool_wait", timeout=30) as (waiter, delta, release, holder):
        # The only connection is out: the next checkout queues until it comes back.
        threading.Timer(0.3, release.set).start()
        with waiter.cursor() as cursor:
            cursor.execute("SELECT 1")
        holder.join(30)
        changes = delta()
    assert changes["django_db_pool_requests_total"] == 2
    assert changes["django_db_pool_wait_seconds_total"] > 0
    assert changes["django_db_pool_timeouts_total"] == 0
    assert changes["django_db_pool_connections_lost_total"] == 0


@pytest.mark.django_db(databases=["postgresql_pool"])
def test_a_request_that_times_out_counts_a_timeout_and_its_wait(require_service: Any) -> None:
    from django.db import OperationalError

    require_service("postgresql")
    with one_connection_held("postgresql_pool_timeout", timeout=0.3) as (late, delta, release, holder):
        with pytest.raises(OperationalError):
            late.ensure_connection()
        release.set()
        holder.join(30)
        changes = delta()
    assert changes["django_db_pool_requests_total"] == 2
    assert changes["django_db_pool_timeouts_total"] == 1
    # The request that timed out waited its whole timeout (0.3 s, counted in whole milliseconds).
    assert changes["django_db_pool_wait_seconds_total"] >= 0.29
    assert changes["django_db_pool_connections_lost_total"] == 0


@pytest.mark.django_db(databases=["postgresql_pool", "postgresql"])
def test_a_broken_connection_the_pool_replaces_counts_as_lost(require_service: Any) -> None:
    require_service("postgresql")
    alias = "postgresql_pool_lost"
    options = {"pool": {"min_size": 1, "max_size": 1, "timeout": 30}}
    # CONN_HEALTH_CHECKS: Django has the pool check each connection it hands out.
    victim = fresh_wrapper("postgresql_pool", alias, OPTIONS=options, CONN_HEALTH_CHECKS=True)
    delta = PoolDelta(alias)
    try:
        with victim.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        victim.close()  # back to the pool, idle
        with connections["postgresql"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
            for _ in range(600):  # the signal is asynchronous: until the backend is gone (bounded)
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend])
                if not cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
        with victim.cursor() as cursor:  # the check finds it dead; the pool opens another
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != backend
        victim.close()
        changes = delta()
    finally:
        victim.close_pool()
    assert changes["django_db_pool_connections_lost_total"] == 1
    assert changes["django_db_pool_requests_total"] == 2
    assert changes["django_db_pool_timeouts_total"] == 0


@pytest.mark.django_db(databases=["postgresql_pool"])
def test_pool_counters_stay_monotonic_when_the_pool_is_made_again(require_service: Any) -> None:
    require_service("postgresql")
    alias = "postgresql_pool_again"
    delta = PoolDelta(alias)
    for _ in range(2):  # close_pool() then a new pool for the same alias: counts add up, never reset
        w = fresh_wrapper("postgresql_pool", alias, OPTIONS={"pool": {"min_size": 1, "max_size": 1}})
        for _ in range(3):
            with w.cursor() as cursor:
                cursor.execute("SELECT 1")
            w.close()
        w.close_pool()
        assert not [k for k in scrape() if k[1] == alias]  # the gauges go with the pool
    assert delta()["django_db_pool_requests_total"] == 6
