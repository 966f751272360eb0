"""PROMETHEUS_CACHE_OPERATION_METRICS behind real servers: gunicorn (threads) and uvicorn (async views).

Each test starts one single-process server on 127.0.0.1 serving tests/cache_project
(LocMem, Django's Redis, pymemcache and django-redis aliases against the real
servers), sends concurrent requests whose views run a fixed set of cache
operations, scrapes /metrics from the same process and checks every count exactly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60
ALIASES = {"default": "locmem", "sessions": "native_redis", "pages": "memcached", "fragments": "redis"}
# What one request to /sync/<alias> records (operation, result), and /async/<alias> the same in twins.
PER_SYNC_REQUEST = {
    ("set", "ok"): 1, ("get", "hit"): 1, ("get", "miss"): 1, ("get_many", "hit"): 1,
    ("get_many", "miss"): 1, ("incr", "ok"): 1, ("has_key", "hit"): 1, ("delete", "ok"): 1,
}  # fmt: skip
PER_ASYNC_REQUEST = {("a" + op, result): n for (op, result), n in PER_SYNC_REQUEST.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(args: list[str], port: int, log: Path) -> Iterator[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.cache_project.settings",
        "PYTHONPATH": str(ROOT),
        "DP_CACHE_TEST_PREFIX": uuid.uuid4().hex[:8],
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"server did not listen within {STARTUP_SECONDS}s:\n{log.read_text()}")
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _hit(base: str, paths: list[str]) -> dict[tuple[str, frozenset], float]:
    with httpx.Client(base_url=base, timeout=30) as client:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda p: client.get(p).status_code, paths))
        assert statuses == [200] * len(paths)
        text = client.get("/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


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
    port = _free_port()
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
    port = _free_port()
    args = [
        "uvicorn", "tests.cache_project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--lifespan", "off", "--no-access-log",
    ]  # fmt: skip
    paths = [f"/{kind}/{alias}" for alias in ALIASES for kind in ("sync", "async") for _ in range(25)]
    with _serve(args, port, tmp_path / "uvicorn.log") as base:
        samples = _hit(base, paths)
    for alias in ALIASES:
        assert _operations(samples, alias) == _expected(25, 25), alias
