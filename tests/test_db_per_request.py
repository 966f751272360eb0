"""PROMETHEUS_REQUEST_DB_METRICS: queries, time and repeated statements per request, by route.

Real requests through a test-only middleware that calls ``db.per_request``
as the outer middleware does, against real SQLite, PostgreSQL (with and
without a pool) and MariaDB, each on our ENGINE and on Django's own with
``PROMETHEUS_INSTRUMENT_DATABASES``; then a real uvicorn serving async views
whose ORM calls go through ``sync_to_async``, under concurrent requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client, override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus.db import per_request
from tests.db_request_project import middleware
from tests.servers import ROOT, free_port, serve
from tests.test_db_instrument import switch
from tests.testapp.models import Owner, Pet

# alias -> (service, stock ENGINE: instrumented without the swap)
ALIASES: dict[str, tuple[str | None, bool]] = {
    "sqlite": (None, False),
    "sqlite_bare": (None, True),
    "postgresql": ("postgresql", False),
    "postgresql_bare": ("postgresql", True),
    "postgresql_pool": ("postgresql", False),
    "postgresql_pool_bare": ("postgresql", True),
    "mysql": ("mysql", False),
    "mysql_bare": ("mysql", True),
}
PROJECT = {
    "ROOT_URLCONF": "tests.db_request_project.urls",
    "MIDDLEWARE": ["tests.db_request_project.middleware.AccountDBQueries"],
}


@pytest.fixture(autouse=True, scope="module")
def _families_unregistered_afterwards() -> Any:
    # Other modules compare every django_http_* family in the registry with upstream's.
    yield
    for family in per_request._families or ():
        REGISTRY.unregister(family)
    per_request._families = None
    per_request._route_cells.clear()


def each_alias(test: Any) -> Any:
    params = [pytest.param(a, marks=pytest.mark.django_db(databases=[a]), id=a) for a in ALIASES]
    return pytest.mark.parametrize("alias", params)(test)


@pytest.fixture
def client(request: pytest.FixtureRequest, require_service: Any) -> Any:
    """A test client on the project, accounting on; ``alias``'s no-swap instrumentation on when stock."""
    alias = request.node.callspec.params["alias"]
    service, noswap = ALIASES[alias]
    if service:
        require_service(service)
    if noswap:
        switch([alias])
    with override_settings(**PROJECT, PROMETHEUS_REQUEST_DB_METRICS=True):
        yield Client(raise_request_exception=False)
    if noswap:
        switch(False)


class Observed:
    """The change of the three per-request families for one route since creation."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        labels = {"route": self.route}
        get = REGISTRY.get_sample_value
        return {
            "requests": get("django_http_request_db_queries_count", labels) or 0.0,
            "queries": get("django_http_request_db_queries_sum", labels) or 0.0,
            "seconds_count": get("django_http_request_db_seconds_count", labels) or 0.0,
            "repeated": get("django_http_request_db_repeated_queries_total", labels) or 0.0,
        }

    def __call__(self) -> dict[str, float]:
        return {k: v - self.before[k] for k, v in self._now().items()}


def accounted(response: Any) -> tuple[int, bool]:
    return int(response["X-DB-Queries"]), response["X-DB-Repeated"] == "True"


def _ten_pets(alias: str) -> None:
    for i in range(10):
        Pet.objects.using(alias).create(owner=Owner.objects.using(alias).create(name=f"o{i}"), name=f"p{i}")


@each_alias
def test_a_view_running_seven_queries_records_seven(alias: str, client: Any) -> None:
    seen = Observed("seven/")
    response = client.get("/seven/", {"db": alias})
    assert response.status_code == 200
    assert json.loads(response.content)["out"] == ["seven", 1, ["seven"], 1, True, 3, 7]
    assert accounted(response) == (7, False)
    assert seen() == {"requests": 1, "queries": 7, "seconds_count": 1, "repeated": 0}


@each_alias
def test_an_n_plus_one_loop_over_ten_rows_is_flagged(alias: str, client: Any) -> None:
    _ten_pets(alias)
    seen = Observed("n-plus-one/")
    response = client.get("/n-plus-one/", {"db": alias})
    assert json.loads(response.content)["owners"] == [f"o{i}" for i in range(10)]
    assert accounted(response) == (11, True)
    assert seen() == {"requests": 1, "queries": 11, "seconds_count": 1, "repeated": 1}
    joined = Observed("select-related/")
    response = client.get("/select-related/", {"db": alias})
    assert accounted(response) == (1, False)
    assert joined() == {"requests": 1, "queries": 1, "seconds_count": 1, "repeated": 0}


@each_alias
@pytest.mark.parametrize(("times", "flagged"), [(4, False), (5, True)])
def test_one_statement_five_times_is_a_repeat_four_is_not(
    alias: str, client: Any, times: int, flagged: bool
) -> None:
    seen = Observed("repeat/<int:times>/")
    response = client.get(f"/repeat/{times}/", {"db": alias})
    # The executemany of nine rows is one query.
    assert accounted(response) == (times + 1, flagged)
    assert seen() == {"requests": 1, "queries": times + 1, "seconds_count": 1, "repeated": int(flagged)}


@pytest.mark.parametrize("alias", [pytest.param("sqlite", marks=pytest.mark.django_db(databases=["sqlite"]))])
def test_a_failing_view_and_a_view_without_queries_are_observed(alias: str, client: Any) -> None:
    broken, none, unmatched = Observed("broken/"), Observed("none/"), Observed("<unmatched>")
    assert client.get("/broken/", {"db": alias}).status_code == 500
    assert client.get("/none/").status_code == 200
    assert client.get("/no/such/page/").status_code == 404
    assert broken() == {"requests": 1, "queries": 1, "seconds_count": 1, "repeated": 0}
    assert none() == {"requests": 1, "queries": 0, "seconds_count": 1, "repeated": 0}
    assert unmatched()["requests"] == 1
    # After a request, its queries are final: the next query of this thread is no one's.
    client.get("/broken/", {"db": alias})
    ended = middleware.last[0]
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
    assert ended.queries == 1


@pytest.mark.django_db(databases=["sqlite"])
def test_off_by_default_and_follows_override_settings() -> None:
    assert per_request.enabled() is False
    with override_settings(**PROJECT):
        seen = Observed("seven/")
        response = Client().get("/seven/", {"db": "sqlite"})
        assert "X-DB-Queries" not in response
        assert seen()["requests"] == 0
        with override_settings(PROMETHEUS_REQUEST_DB_METRICS=True):
            assert per_request.enabled() is True
    assert per_request.enabled() is False


def test_end_never_raises_and_ignores_what_begin_did_not_give() -> None:
    per_request.end(None, "x/")
    per_request.end(object(), "x/")  # logged, not raised
    token = per_request.begin()
    per_request.end(token, "end-twice/")
    per_request.end(token, "end-twice/")  # observed twice but harmless
    assert REGISTRY.get_sample_value("django_http_request_db_queries_count", {"route": "end-twice/"}) == 2


def test_the_families_have_the_documented_buckets() -> None:
    queries, seconds, repeated = per_request.families()
    assert queries._upper_bounds == [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, float("inf")]
    from django_prometheus.conf import PROMETHEUS_LATENCY_BUCKETS

    assert seconds._upper_bounds == [float(b) for b in PROMETHEUS_LATENCY_BUCKETS]
    assert (queries._labelnames, seconds._labelnames, repeated._labelnames) == (("route",),) * 3


# A real uvicorn: async views, sync_to_async ORM calls, concurrent requests.

ASYNC_ROUTES = {"async/3/": 3, "async/5/": 5, "async/10/": 10}


def _migrated_sqlite(path: Path, env: dict[str, str]) -> None:
    environ = {"DJANGO_SETTINGS_MODULE": "tests.db_request_project.settings", "PYTHONPATH": str(ROOT), **env}
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, **environ},
        check=True,
    )
    # The inner `with` commits; closing() closes (on 3.13 an unclosed connection warns).
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO testapp_owner (name) VALUES (?)", [(f"o{i}",) for i in range(12)])
        db.executemany(
            "INSERT INTO testapp_pet (owner_id, name) VALUES (?, ?)", [(i + 1, f"p{i}") for i in range(10)]
        )


def _get(url: str) -> tuple[int, bool, dict]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return (
            int(response.headers["X-DB-Queries"]),
            response.headers["X-DB-Repeated"] == "True",
            json.loads(response.read()),
        )


@pytest.mark.parametrize("noswap", [False, True], ids=["engine", "noswap"])
def test_uvicorn_async_views_concurrent_requests_never_mix_counts(tmp_path: Path, noswap: bool) -> None:
    env = {"DP_DB_FILE": str(tmp_path / "db.sqlite3")}
    if noswap:
        env |= {"DP_DB_ENGINE": "django.db.backends.sqlite3", "DP_DB_NOSWAP": "1"}
    _migrated_sqlite(tmp_path / "db.sqlite3", env)
    port = free_port()
    args = ["uvicorn", "tests.db_request_project.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--lifespan", "off", "--no-access-log"]  # fmt: skip
    with serve(args, port, tmp_path / "uvicorn.log", "tests.db_request_project.settings", **env) as base:
        urls = [*(route for route in ASYNC_ROUTES for _ in range(8)), *["n-plus-one/"] * 6]
        with ThreadPoolExecutor(max_workers=12) as pool:
            got = list(pool.map(lambda route: (route, _get(f"{base}/{route}")), urls))
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
            text = response.read().decode()
    for route, (queries, repeated, body) in got:
        if route == "n-plus-one/":
            assert (queries, repeated) == (11, True), route
        else:
            n = ASYNC_ROUTES[route]
            # Each query alternates two statements: only 10 runs each reach the threshold.
            assert (queries, repeated, body["n"]) == (n, n == 10, n), route
    samples = {
        (s.name, s.labels.get("route"), s.labels.get("le")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for route, n in ASYNC_ROUTES.items():
        assert samples["django_http_request_db_queries_count", route, None] == 8
        assert samples["django_http_request_db_queries_sum", route, None] == 8 * n
        assert samples["django_http_request_db_queries_bucket", route, f"{float(n)}"] == 8
        below = {3: "2.0", 5: "3.0", 10: "5.0"}[n]
        assert samples["django_http_request_db_queries_bucket", route, below] == 0
        assert samples.get(("django_http_request_db_repeated_queries_total", route, None), 0) == (
            8 if n == 10 else 0
        )
    assert samples["django_http_request_db_queries_sum", "n-plus-one/", None] == 66
    assert samples["django_http_request_db_repeated_queries_total", "n-plus-one/", None] == 6
