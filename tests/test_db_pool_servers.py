"""Pool metrics in multiprocess mode: gunicorn workers, each with its own real PostgreSQL pool, under load.

Two gthread workers (4 threads each) serve a view holding a pooled connection
(``max_size`` 2) for a while, on our ENGINE (``pooled``) and on Django's own
with ``PROMETHEUS_INSTRUMENT_DATABASES`` (``pooled_bare``). The scrapes go to
the view and to the single export port, both of which read the multiprocess
files only: every worker's pool must be there, each under its ``pid``, and a
worker killed with -9 must drop out (gunicorn's ``child_exit`` hook).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sys
import sysconfig
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Samples, free_port, parse_samples, serve

HOST = "127.0.0.1"
ALIASES = ("pooled", "pooled_bare")
WORKERS = 2
#: The pools' timeout. Above psycopg_pool's 1 s retry delay: a checkout that meets both of a
#: pool's connections broken retries after ~1 s, and must still have time left then.
TIMEOUT = 3.0
#: psycopg_pool (3.3) adds to its statistics outside its lock (``self._stats[key] += n`` on a
#: Counter, in ``getconn``): without the GIL two threads' additions race and one can be lost, so
#: there the pool's counters are at most what happened (docs/free-threaded.md), and exact only
#: with a GIL. Ours copy them: what they read is the pool's own figure.
POOL_STATS_EXACT = not (
    sysconfig.get_config_var("Py_GIL_DISABLED") and not getattr(sys, "_is_gil_enabled", lambda: True)()
)
pytestmark = pytest.mark.skipif(
    shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None, reason="no gunicorn"
)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def scrape(port: int) -> Samples:
    status, body = get(port, "/metrics")
    assert status == 200, body[:500]
    return parse_samples(body.decode())


def pool_series(samples: Samples, name: str, alias: str, **labels: str) -> dict[str, float]:
    """pid -> value of the pool gauge ``name`` for ``alias`` (and ``labels``)."""
    out = {}
    for (sample, frozen), value in samples.items():
        found = dict(frozen)
        if (
            sample == name
            and found.get("alias") == alias
            and all(found.get(k) == v for k, v in labels.items())
        ):
            out[found["pid"]] = value
    return out


def counter(samples: Samples, name: str, alias: str) -> float:
    return samples.get((name, frozenset({"alias": alias}.items())), 0.0)


def load(port: int, alias: str, n: int, seconds: float) -> Counter:
    """``n`` concurrent requests holding a connection ``seconds``; (status, pid) counts."""

    def one(_: int) -> tuple[int, str | None]:
        status, body = get(port, f"/sleep?db={alias}&s={seconds}")
        return status, (str(json.loads(body)["pid"]) if status == 200 else None)

    with ThreadPoolExecutor(n) as pool:
        return Counter(pool.map(one, range(n)))


def wait_for(port: int, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on {port}")


def terminate_backends(tag: str, alias: str) -> int:
    """Terminate every PostgreSQL backend of ``alias``' pools (by application_name); how many."""
    import psycopg

    from tests.db_settings import PG

    with psycopg.connect(
        host=PG["HOST"], port=PG["PORT"], user=PG["USER"], password=PG["PASSWORD"], dbname=PG["NAME"],
        autocommit=True,
    ) as conn:  # fmt: skip
        rows = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [f"{tag}-{alias}"],
        ).fetchall()
        for _ in range(600):  # asynchronous: until they are gone (bounded)
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [[r[0] for r in rows]]
            ).fetchone()[0]
            if not left:
                break
            time.sleep(0.05)
    return len(rows)


def test_every_workers_pool_is_in_the_aggregate_and_a_dead_one_drops_out(
    tmp_path: Path, require_service: Any
) -> None:
    require_service("postgresql")
    mp_dir = tmp_path / "mp"
    mp_dir.mkdir()
    port, export_port = free_port(), free_port()
    tag = f"dp-pool-{uuid.uuid4().hex[:8]}"
    args = [
        "gunicorn", "tests.db_pool_project.wsgi:application", "-b", f"{HOST}:{port}",
        "-w", str(WORKERS), "-k", "gthread", "--threads", "4",
        "-c", "tests/db_pool_project/gunicorn.conf.py", "--graceful-timeout", "5",
    ]  # fmt: skip
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "POOL_EXPORT_PORT": str(export_port),
        "POOL_TAG": tag,
        "POOL_TIMEOUT": str(TIMEOUT),
    }
    with serve(args, port, tmp_path / "gunicorn.log", "tests.db_pool_project.settings", **env):
        wait_for(export_port)
        sent = Counter()
        pids: dict[str, set[str]] = {alias: set() for alias in ALIASES}

        def answered(alias: str, statuses: Counter) -> None:
            sent[alias] += sum(statuses.values())
            pids[alias] |= {pid for (_s, pid) in statuses if pid}

        # Broken connections: terminated behind the pools' back, found by the checks Django asks for.
        for alias in ALIASES:
            for _ in range(6):
                answered(alias, load(port, alias, 1, 0))
        terminated = {alias: terminate_backends(tag, alias) for alias in ALIASES}
        for alias in ALIASES:
            for _ in range(6):
                statuses = load(port, alias, 1, 0)
                assert list(statuses) == [(200, next(iter(statuses))[1])], statuses
                answered(alias, statuses)

        # Load: 16 requests on 8 threads and 2 workers with pools of 2: requests queue in the pools.
        # Scrapes go to the export port meanwhile (a thread of its own, not a gunicorn slot).
        most_in_use = dict.fromkeys(ALIASES, 0.0)
        waited = dict.fromkeys(ALIASES, False)
        with ThreadPoolExecutor(len(ALIASES)) as runner:
            running = [runner.submit(load, port, alias, 16, 0.5) for alias in ALIASES]
            end = time.monotonic() + 60
            while time.monotonic() < end and not all(f.done() for f in running):
                now = scrape(export_port)
                for alias in ALIASES:
                    in_use = pool_series(now, "django_db_pool_connections", alias, state="in_use")
                    assert all(v <= 2 for v in in_use.values()), in_use  # never more than max_size
                    most_in_use[alias] = max(most_in_use[alias], sum(in_use.values()))
                    waiting = pool_series(now, "django_db_pool_connections", alias, state="waiting")
                    waited[alias] = waited[alias] or any(v > 0 for v in waiting.values())
                time.sleep(0.02)
            results = dict(zip(ALIASES, (f.result() for f in running), strict=True))
        for alias, statuses in results.items():
            assert sum(n for (status, _), n in statuses.items() if status == 200) == 16, statuses
            answered(alias, statuses)
        assert all(v >= 2 for v in most_in_use.values()), most_in_use
        assert all(waited.values()), waited

        # Timeouts: every connection held 7 s, the pools' timeout is 3 s: the requests that
        # queue behind them fail (500), and each is one timeout, in whichever worker it ran.
        failed = {}
        for alias in ALIASES:
            statuses = load(port, alias, 8, 7)
            failed[alias] = sum(n for (status, _), n in statuses.items() if status == 500)
            assert failed[alias] + sum(n for (status, _), n in statuses.items() if status == 200) == 8
            answered(alias, statuses)
        assert all(failed.values()), failed

        for where in (port, export_port):  # the view and the single export port: the same aggregate
            after = scrape(where)
            for alias in ALIASES:
                in_use = pool_series(after, "django_db_pool_connections", alias, state="in_use")
                assert set(in_use) == pids[alias], (alias, in_use, pids)  # one series per worker
                assert sum(in_use.values()) == 0
                assert set(
                    pool_series(after, "django_db_pool_connections", alias, state="waiting").values()
                ) == {0}
                assert set(pool_series(after, "django_db_pool_size", alias, bound="max").values()) == {2}
                assert set(pool_series(after, "django_db_pool_size", alias, bound="min").values()) == {1}
                requests = counter(after, "django_db_pool_requests_total", alias)
                timeouts = counter(after, "django_db_pool_timeouts_total", alias)
                waited_s = counter(after, "django_db_pool_wait_seconds_total", alias)
                if POOL_STATS_EXACT:
                    assert requests == sent[alias]
                    assert timeouts == failed[alias]
                    # Each timed-out request waited its whole timeout (counted in whole ms).
                    assert waited_s >= 0.99 * TIMEOUT * failed[alias]
                else:
                    # A lost addition loses counts, never adds any; the last addition to each
                    # stays (a timed-out request's: it waited its whole timeout).
                    assert 1 <= requests <= sent[alias], (requests, sent[alias])
                    assert 1 <= timeouts <= failed[alias], (timeouts, failed[alias])
                    assert waited_s >= 0.99 * TIMEOUT, waited_s
                assert (
                    1 <= counter(after, "django_db_pool_connections_lost_total", alias) <= terminated[alias]
                )

        # A worker killed with -9: its pool's series leave the aggregate; the counters keep its counts.
        before = scrape(port)
        victim = sorted(pids["pooled"])[0]
        os.kill(int(victim), signal.SIGKILL)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            now = scrape(port)
            if victim not in pool_series(now, "django_db_pool_connections", "pooled", state="idle"):
                break
            time.sleep(0.1)
        for alias in ALIASES:
            for family in ("django_db_pool_connections", "django_db_pool_size"):
                assert victim not in pool_series(now, family, alias), (family, alias)
            for name in ("django_db_pool_requests_total", "django_db_pool_timeouts_total"):
                assert counter(now, name, alias) == counter(before, name, alias)
        assert not list(mp_dir.glob(f"gauge_*_{victim}.db"))
