"""PROMETHEUS_CACHE_OPERATION_METRICS behind real servers: gunicorn (threads) and uvicorn (async views).

Each test starts one single-process server on 127.0.0.1 serving tests/cache_project
(LocMem, Django's Redis, pymemcache and django-redis aliases against the real
servers), sends concurrent requests whose views run a fixed set of cache
operations, scrapes /metrics from the same process and checks every count exactly.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.servers import Samples, free_port, parse_samples, serve

ALIASES = {"default": "locmem", "sessions": "native_redis", "pages": "memcached", "fragments": "redis"}
# What one request to /sync/<alias> records (operation, result), and /async/<alias> the same in twins.
PER_SYNC_REQUEST = {
    ("set", "ok"): 1, ("get", "hit"): 1, ("get", "miss"): 1, ("get_many", "hit"): 1,
    ("get_many", "miss"): 1, ("incr", "ok"): 1, ("has_key", "hit"): 1, ("delete", "ok"): 1,
}  # fmt: skip
PER_ASYNC_REQUEST = {("a" + op, result): n for (op, result), n in PER_SYNC_REQUEST.items()}


def _serve(args: list[str], port: int, log: Path):
    return serve(args, port, log, "tests.cache_project.settings", DP_CACHE_TEST_PREFIX=uuid.uuid4().hex[:8])


def _hit(base: str, paths: list[str]) -> Samples:
    """GET every path from 8 threads at once, then scrape.

    A client per thread: httpcore's connection pool is not safe to share between threads
    without the GIL (on 3.13t ``has_expired()`` reads ``_expire_at`` twice while another
    thread sets it to None: ``TypeError``, encode/httpcore#1090).
    """
    mine = threading.local()
    clients: list[httpx.Client] = []

    def get(path: str) -> int:
        if not hasattr(mine, "client"):
            mine.client = httpx.Client(base_url=base, timeout=30)
            clients.append(mine.client)
        return mine.client.get(path).status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get, paths))
    finally:
        for client in clients:
            client.close()
    assert statuses == [200] * len(paths)
    with httpx.Client(base_url=base, timeout=30) as client:
        return parse_samples(client.get("/metrics").text)


def _operations(samples, alias: str) -> dict[tuple[str, str], float]:
    labels = {"alias": alias, "backend": ALIASES[alias]}
    out = {}
    for (name, frozen), value in samples.items():
        found = dict(frozen)
        if (
            value
            and name == "django_cache_operations_total"
            and all(found.get(k) == v for k, v in labels.items())
        ):
            out[found["operation"], found["result"]] = value
    return out


def _timed(samples, alias: str) -> dict[str, float]:
    labels = {"alias": alias, "backend": ALIASES[alias]}
    out = {}
    for (name, frozen), value in samples.items():
        found = dict(frozen)
        if (
            value
            and name == "django_cache_operation_duration_seconds_count"
            and all(found.get(k) == v for k, v in labels.items())
        ):
            out[found["operation"]] = value
    return out


def _expected(sync: int, asynchronous: int) -> dict[tuple[str, str], float]:
    out = {k: float(v * sync) for k, v in PER_SYNC_REQUEST.items() if sync}
    out.update({k: float(v * asynchronous) for k, v in PER_ASYNC_REQUEST.items() if asynchronous})
    return out


@pytest.fixture
def services(require_service):
    require_service("redis")
    require_service("memcached")


def test_gunicorn_threads_count_every_operation_once_per_alias(tmp_path, services):
    port = free_port()
    args = [
        "gunicorn", "tests.cache_project.wsgi:application", "-b", f"127.0.0.1:{port}",
        "-w", "1", "--threads", "4", "-k", "gthread",
    ]  # fmt: skip
    paths = [f"/sync/{alias}" for alias in ALIASES for _ in range(40)]
    with _serve(args, port, tmp_path / "gunicorn.log") as base:
        samples = _hit(base, paths)
    for alias in ALIASES:
        assert _operations(samples, alias) == _expected(40, 0), alias
        # one observation per call: get is called twice per request, get_many once for its two keys
        calls = {"set": 1, "get": 2, "get_many": 1, "incr": 1, "has_key": 1, "delete": 1}
        assert _timed(samples, alias) == {op: 40.0 * n for op, n in calls.items()}, alias


def test_uvicorn_async_views_count_twins_as_themselves(tmp_path, services):
    port = free_port()
    args = [
        "uvicorn", "tests.cache_project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--lifespan", "off", "--no-access-log",
    ]  # fmt: skip
    paths = [f"/{kind}/{alias}" for alias in ALIASES for kind in ("sync", "async") for _ in range(25)]
    with _serve(args, port, tmp_path / "uvicorn.log") as base:
        samples = _hit(base, paths)
    for alias in ALIASES:
        assert _operations(samples, alias) == _expected(25, 25), alias
