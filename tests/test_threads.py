"""Exact counts under threads, meaningful without a GIL: cells, families, scrapes, the store, caches.

Every test starts its threads at one barrier so that they really run at once
(on a free-threaded build, in parallel on every core) and then checks the
totals exactly: a lost or doubled increment, a lost child or a second cell for
one label set is a failure. ``OPS`` increments per thread: 1,000,000 on a
free-threaded build, fewer on a GIL build where they cannot interleave inside
a C call anyway (``DP_THREAD_OPS`` overrides both).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.cache import caches
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus import _core as core_pkg
from django_prometheus import metrics

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
THREADS = 8
OPS = int(os.environ.get("DP_THREAD_OPS") or (1_000_000 if FREE_THREADED else 100_000))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def core(twin):
    return twin.cells


def run_threads(target: Callable[[int], None], n: int = THREADS) -> None:
    """Run ``target(i)`` in ``n`` threads released together; re-raise the first failure."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # collected, re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- the interpreter -------------------------------------------------------------------------------


def test_every_compiled_module_declares_free_threading_support():
    # Cython writes Py_mod_gil = Py_MOD_GIL_NOT_USED only for this directive; without it,
    # importing the module re-enables the GIL for the whole process on a free-threaded build.
    sources = sorted((ROOT / "_core").glob("*.pyx"))
    assert sources
    for pyx in sources:
        head = pyx.read_text().split('"""', 1)[0]
        assert re.search(r"^# cython:.*\bfreethreading_compatible=True\b", head, re.M), pyx.name


@pytest.mark.skipif(not FREE_THREADED, reason="a GIL build has no GIL to keep disabled")
def test_importing_the_compiled_core_keeps_the_gil_disabled():
    modules = sorted(
        f"django_prometheus._core.{p.name.split('.', 1)[0]}"
        for p in Path(core_pkg.__file__).parent.iterdir()
        if p.suffix in (".so", ".pyd")
    )
    assert modules, "no compiled module installed"
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "    assert not sys._is_gil_enabled(), m\n"
        "import django_prometheus.middleware, django_prometheus.exports\n"
        "print(sys._is_gil_enabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    # And in this process, after everything the suite imported so far.
    assert not sys._is_gil_enabled()


# -- cells -----------------------------------------------------------------------------------------


def test_counter_cell_counts_every_increment_of_8_threads(core):
    c = core.Counter()

    def work(_: int) -> None:
        inc = c.inc
        for _ in range(OPS):
            inc()

    run_threads(work)
    assert c.get() == THREADS * OPS


def test_gauge_cell_balances_exactly_across_threads(core):
    g = core.Gauge()

    def work(i: int) -> None:
        step = g.inc if i % 2 else g.dec
        for _ in range(OPS // 4):
            step(2.0)

    run_threads(work)
    assert g.get() == 0.0
    run_threads(lambda i: [g.inc() for _ in range(OPS // 4)])
    assert g.get() == THREADS * (OPS // 4)


# Dyadic values: every partial sum is exact in a double, so the sum can be compared exactly.
VALUES = (0.5, 1.0, 2.0, 8.0)


def test_histogram_cell_count_sum_and_every_bucket_are_exact(core):
    h = core.Histogram([1.0, 2.0, 5.0])

    def work(i: int) -> None:
        observe = h.observe
        for j in range(OPS):
            observe(VALUES[(i + j) & 3])

    run_threads(work)
    total = THREADS * OPS
    assert total % 4 == 0
    assert h.count == total
    assert h.sum == total // 4 * sum(VALUES)
    # Cumulative: <=1 holds 0.5 and 1.0, <=2 adds 2.0, <=5 nothing, +Inf adds 8.0.
    assert h.buckets() == [total // 2, total * 3 // 4, total * 3 // 4, total]


# -- families --------------------------------------------------------------------------------------

CHILDREN_PER_THREAD = 200


def test_family_makes_one_cell_per_label_set_under_concurrent_creation(core):
    created: list[int] = []
    lock = threading.Lock()

    def factory(values):
        with lock:
            created.append(1)
        return core.Counter()

    fam = core.Family(factory)
    seen_same: list[object] = [None] * THREADS

    def work(i: int) -> None:
        seen_same[i] = fam.get(("same",))
        for j in range(CHILDREN_PER_THREAD):
            fam.get(("same",)).inc()
            fam.get(("shared", str(j))).inc()  # every thread races to create these
            fam.get(("own", str(i), str(j))).inc()

    run_threads(work)
    assert all(cell is seen_same[0] for cell in seen_same)
    assert len(fam) == 1 + CHILDREN_PER_THREAD + THREADS * CHILDREN_PER_THREAD
    assert len(created) == len(fam)  # no cell made and then thrown away by a lost race
    children = dict(fam.children())
    assert children[("same",)].get() == THREADS * CHILDREN_PER_THREAD
    for j in range(CHILDREN_PER_THREAD):
        assert children[("shared", str(j))].get() == THREADS
        for i in range(THREADS):
            assert children[("own", str(i), str(j))].get() == 1


RACE_SECONDS = 5.0

REMOVE_RACE = """
import importlib, sys, threading, time
core = importlib.import_module(sys.argv[1])
family = core.Family(lambda values: core.Counter())
stop = time.monotonic() + float(sys.argv[2])

def getter():
    while time.monotonic() < stop:
        for _ in range(1000):
            family.get(("k",)).inc()

def remover():
    while time.monotonic() < stop:
        for _ in range(1000):
            family.remove(("k",))

threads = [threading.Thread(target=getter) for _ in range(3)] + [threading.Thread(target=remover)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
"""


def test_family_get_survives_a_concurrent_remove_of_the_same_child(core):
    # A borrowed dict lookup then an incref lets remove() free the cell in between on a
    # free-threaded build (a crash or a hang). In a child process: a crash must not take the suite.
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", REMOVE_RACE, core.__name__, str(RACE_SECONDS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=RACE_SECONDS + 120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("get() racing remove() hung")
    assert (out.returncode, out.stdout.strip()) == (0, "ok"), out.stderr[-2000:]


def test_labels_children_are_shared_and_none_lost_while_scraped():
    registry = CollectorRegistry()
    counter = metrics.Counter("ft_requests", "Requests.", ["worker", "n"], registry=registry)
    hist = metrics.Histogram("ft_latency_seconds", "Latency.", ["n"], buckets=(1.0, 2.0), registry=registry)
    writers = THREADS - 2
    lock = threading.Lock()
    finished: list[int] = []
    done = threading.Event()
    scrapes: list[int] = []

    def work(i: int) -> None:
        if i >= writers:  # two scrapers, at least once each and until every writer is done
            n = 0
            while True:
                assert "ft_requests_total" in generate_latest(registry).decode()
                n += 1
                if done.is_set():
                    break
            scrapes.append(n)
            return
        try:
            for j in range(CHILDREN_PER_THREAD):
                counter.labels(str(i), str(j)).inc()
                counter.labels(worker="all", n=str(j)).inc()
                hist.labels(str(j)).observe(0.5)
        finally:
            with lock:
                finished.append(i)
                if len(finished) == writers:
                    done.set()

    run_threads(work)
    assert len(scrapes) == 2 and all(n >= 1 for n in scrapes)

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(generate_latest(registry).decode())
        for s in fam.samples
    }
    totals = [v for (name, _), v in samples.items() if name == "ft_requests_total"]
    assert len(totals) == writers * CHILDREN_PER_THREAD + CHILDREN_PER_THREAD
    for j in range(CHILDREN_PER_THREAD):
        assert samples[("ft_requests_total", (("n", str(j)), ("worker", "all")))] == writers
        for i in range(writers):
            assert samples[("ft_requests_total", (("n", str(j)), ("worker", str(i))))] == 1
        assert samples[("ft_latency_seconds_count", (("n", str(j)),))] == writers
        assert samples[("ft_latency_seconds_bucket", (("le", "1.0"), ("n", str(j))))] == writers


# -- the multiprocess store ------------------------------------------------------------------------


def test_multiprocess_store_keeps_every_cell_and_increment_of_concurrent_threads(core, tmp_path):
    store = core.MultiProcessStore(str(tmp_path))
    try:
        shared = store.counter('["ft_shared", "ft_shared_total", {}, "Shared."]')
        per_thread = 300  # enough new entries to grow the file (64 KiB) while others write

        def work(i: int) -> None:
            for j in range(per_thread):
                key = f'["ft_own", "ft_own_total", {{"t": "{i}", "j": "{j}"}}, "Own."]'
                store.counter(key).inc(2.0)
                shared.inc()
            for _ in range(OPS // 10):
                shared.inc()

        run_threads(work)
        assert shared.get() == THREADS * (per_thread + OPS // 10)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        samples = {  # one collect: each one reads and merges every file
            (s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples
        }
        assert samples[("ft_shared_total", ())] == THREADS * (per_thread + OPS // 10)
        own = {labels: v for (name, labels), v in samples.items() if name == "ft_own_total"}
        assert own == {(("j", str(j)), ("t", str(i))): 2.0 for i in range(THREADS) for j in range(per_thread)}
    finally:
        store.close()


# -- cache backends --------------------------------------------------------------------------------

# Every instrumented backend whose client is safe to use from many threads (each
# thread gets its own backend instance from ``caches``; the cells are shared).
THREAD_SAFE_CACHES = ["locmem", "filebased", "pymemcache", "pylibmc", "native_redis", "redis"]
NETWORK = {"pymemcache": "memcached", "pylibmc": "memcached", "native_redis": "redis", "redis": "redis"}


def _cache_value(name: str, backend: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, {"backend": backend}) or 0.0


@pytest.mark.services
@pytest.mark.parametrize("alias", THREAD_SAFE_CACHES)
def test_concurrent_cache_gets_count_every_get_hit_and_miss(alias, require_service):
    if alias in NETWORK:
        require_service(NETWORK[alias])
    # Network round trips: far fewer than the in-memory cells, still thousands per thread.
    gets = max(1, min(OPS // 500, 2000))
    cache = caches[alias]
    backend = type(cache).prometheus_backend
    cache.set("ft-hit", "value", 300)
    cache.delete("ft-miss")
    names = (
        "django_cache_get_total",
        "django_cache_get_hits_total",
        "django_cache_get_misses_total",
        "django_cache_get_fail_total",
    )
    before = [_cache_value(n, backend) for n in names]

    def work(_: int) -> None:
        c = caches[alias]  # this thread's own backend instance (and connection)
        try:
            for _ in range(gets):
                assert c.get("ft-hit") == "value"
                assert c.get("ft-miss", "default") == "default"
        finally:
            c.close()  # what request_finished would do: no socket left for the GC

    run_threads(work)
    after = [_cache_value(n, backend) for n in names]
    total = THREADS * gets
    assert [a - b for a, b in zip(after, before, strict=True)] == [2 * total, total, total, 0]
