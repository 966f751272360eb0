"""Celery metrics against a real Redis broker and a real worker of each pool type.

This process publishes a known mix (and counts ``celery_task_sent_total`` itself); the worker's
main process counts received and revoked tasks, its pool (two prefork children, two threads, or
the main process itself under solo) the rest, served by the worker's exporter port. Prefork and
solo run in multiprocess mode (PROMETHEUS_MULTIPROC_DIR: the children's files summed; solo's
one process writing files although it never forks), threads in single-process mode, as a
one-process worker needs no directory. Every family must be exact, the active gauge back to 0.

Each run has a queue of its own: a worker left over from an interrupted run (or another run on
the same Redis) consumes only its own queue, so it can neither take this run's tasks nor add
to its counts.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("celery", reason="Celery is an optional integration")

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from prometheus_client import REGISTRY, generate_latest  # noqa: E402

from django_prometheus import celery_metrics  # noqa: E402
from tests.servers import STARTUP_SECONDS, Samples, free_port, parse_samples  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 120
WORKER_HOST = "bghost"  # the worker is named <pool>-<run>@bghost
HERE = socket.gethostname()
#: What the exporter logs when its port is taken (between free_port() and the worker's bind).
PORT_TAKEN = b"cannot export metrics"
#: In the banner a worker prints once Django is set up, so once its exporter has bound (or not).
BANNER = b"[queues]"
NAMES = ("bg.add", "bg.fail", "bg.retry_once", "bg.reject")
#: pool -> (its worker options, whether it runs in multiprocess mode)
POOLS = {
    "prefork": (["-P", "prefork", "-c", "2"], True),
    "threads": (["-P", "threads", "-c", "2"], False),
    "solo": (["-P", "solo"], True),
}


@pytest.fixture
def broker(require_service) -> str:
    require_service("redis")
    return settings.REDIS_URL.rstrip("/") + "/7"


@pytest.fixture
def queue(broker) -> Iterator[str]:
    """A queue no other run shares; removed from Redis afterwards."""
    name = f"bg-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(broker)
    client.delete(name, f"_kombu.binding.{name}")
    client.close()


@pytest.fixture
def app(broker):
    from tests.bg_project import celery_tasks
    from tests.bg_project.celeryapp import app

    app.conf.broker_url = broker
    assert celery_metrics.install()
    try:
        yield app, celery_tasks
    finally:
        celery_metrics.uninstall()
        app.close()


def test_off_nothing_is_connected_or_registered():
    from celery import signals

    assert not celery_metrics.enabled()
    for signal_ in (signals.before_task_publish, signals.task_prerun, signals.task_received):
        assert not any("django_prometheus" in str(key) for key, *_ in signal_.receivers)
    assert b"celery_task_" not in generate_latest(REGISTRY)


def test_host_of_takes_the_host_part_of_a_node_name():
    assert celery_metrics.host_of("worker1@web-3") == "web-3"
    assert celery_metrics.host_of("web-4") == "web-4"


def test_overlapping_runs_of_one_task_id_in_two_threads_each_observe_their_runtime(app):
    """A retried task keeps its id; under the threads pool its next run can start in another thread
    before this run ends. Celery's own tracer (``apply``), two threads, one task id: run 2 starts
    while run 1 is still running, run 1 ends (its postrun) before run 2 succeeds. Both runtimes
    are observed; keyed by task id alone, run 1's postrun dropped run 2's start."""
    celery_app, _ = app
    second_running, release_second = threading.Event(), threading.Event()

    @celery_app.task(name="bg.overlap", bind=True, shared=False)
    def overlap_body(self, run):
        if run == 1:
            assert second_running.wait(10)
        else:
            second_running.set()
            assert release_second.wait(10)
        return run

    # The task bound to the app here, once: Celery binds a task lazily, and two threads making
    # its first call at once race in that (on free-threaded builds one saw no request stack).
    overlap = celery_app.tasks["bg.overlap"]
    assert overlap.request_stack is not None

    def runtime_count() -> float:
        samples = parse_samples(generate_latest(REGISTRY).decode())
        return sum(
            value for (family, labels), value in samples.items()
            if family == "celery_task_runtime_count" and ("name", "bg.overlap") in labels
        )  # fmt: skip

    before = runtime_count()
    results: dict[int, object] = {}
    task_id = uuid.uuid4().hex
    threads = [
        threading.Thread(
            target=lambda run=run: results.update({run: overlap.apply((run,), task_id=task_id).get()})
        )
        for run in (1, 2)
    ]
    for thread in threads:
        thread.start()
    threads[0].join(10)
    assert results == {1: 1}  # run 1 ended (success, then postrun) while run 2 still runs
    release_second.set()
    threads[1].join(10)
    assert results == {1: 1, 2: 2}
    assert runtime_count() - before == 2


def sample_value(samples: Samples, family: str, /, **labels: str) -> float:
    """``tests.servers.sample_value``, for families with a ``name`` label."""
    return samples.get((family, frozenset(labels.items())), 0.0)


def _scrape(port: int) -> Samples | None:
    """The worker's exporter's samples; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return parse_samples(response.read().decode())
    except OSError:
        return None


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def scrape(self) -> Samples:
        """The exporter's samples ({} if it does not answer), failing at once if the worker died."""
        assert self.proc.poll() is None, f"the worker exited with {self.proc.returncode}:\n{self.output()}"
        return _scrape(self.port) or {}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown; if it hangs, kill its process group (pool children too): no worker outlives
    its test to consume from the broker."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def celery_worker(pool: str, queue: str, broker: str, mp: Path | None, log: Path) -> Iterator[Worker]:
    """A ``celery worker`` of ``pool`` consuming only ``queue``, once its exporter port answers.

    Its port is picked free here and bound by the worker seconds later: if another process took
    it meanwhile (the worker logs so), the worker is started again on another port.
    """
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    }
    options = POOLS[pool][0]
    for _attempt in range(3):
        port = free_port()
        env = dict(base, DJANGO_SETTINGS_MODULE="tests.bg_project.settings", PYTHONPATH=str(ROOT),
                   DP_BG_BROKER_URL=broker, DP_BG_CELERY_METRICS="1", DP_BG_EXPORT_PORT=str(port),
                   PYTHONUNBUFFERED="1")  # fmt: skip
        if mp is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(mp)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.bg_project.celeryapp", "worker", *options,
                 "-Q", queue, "-n", f"{pool}-{queue}@{WORKER_HOST}", "--without-gossip", "--without-mingle",
                 "--without-heartbeat", "-l", "warning"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while BANNER not in (text := log.read_bytes()) or (
                PORT_TAKEN not in text and _scrape(port) is None
            ):
                assert proc.poll() is None, f"the worker exited with {proc.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"not ready in {STARTUP_SECONDS}s:\n{log.read_text()}"
                time.sleep(0.1)
            if PORT_TAKEN not in text:
                yield Worker(proc, port, log)
                return
        finally:
            _stop(proc)
    pytest.fail(f"the worker's exporter port was taken three times:\n{log.read_text()}")


def _sent_here(name: str, queue: str) -> float:
    labels = {"name": name, "hostname": HERE, "queue_name": queue}
    return REGISTRY.get_sample_value("celery_task_sent_total", labels) or 0.0


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_worker_counts_a_known_mix_exactly(pool, app, broker, queue, tmp_path):
    app, tasks = app
    multiprocess = POOLS[pool][1]
    mp = tmp_path / "mp"
    mp.mkdir()
    w = {"hostname": WORKER_HOST, "queue_name": queue}
    with celery_worker(pool, queue, broker, mp if multiprocess else None, tmp_path / "worker.log") as worker:
        for _ in range(4):
            tasks.add.apply_async((1, 2), queue=queue)
        for kind in ("value", "value", "key"):
            tasks.fail.apply_async((kind,), queue=queue)
        tasks.retry_once.apply_async(queue=queue)
        tasks.reject.apply_async(queue=queue)
        expired = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        tasks.add.apply_async((0, 0), expires=expired, queue=queue)

        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            s = worker.scrape()
            done = (
                sample_value(s, "celery_task_succeeded_total", name="bg.add", **w),
                sample_value(s, "celery_task_succeeded_total", name="bg.retry_once", **w),
                sum(sample_value(s, "celery_task_failed_total", name="bg.fail", exception=e, **w) for e in
                    ("ValueError", "KeyError")),
                sample_value(s, "celery_task_rejected_total", name="bg.reject", **w),
                sample_value(s, "celery_task_revoked_total", name="bg.add", **w),
                sample_value(s, "celery_worker_tasks_active", hostname=WORKER_HOST),
            )  # fmt: skip
            if done == (4, 1, 3, 1, 1, 0):
                break
            assert time.monotonic() < deadline, f"not done in {DEADLINE_SECONDS}s: {done}\n{worker.output()}"
            time.sleep(0.1)
        worker_pid = worker.proc.pid

    def v(family: str, name: str, **extra: str) -> float:
        return sample_value(s, family, name=name, **w, **extra)

    got = {
        (family, name): v(family, name)
        for family in (
            "celery_task_received_total", "celery_task_started_total", "celery_task_succeeded_total",
            "celery_task_retried_total", "celery_task_revoked_total", "celery_task_rejected_total",
            "celery_task_runtime_count",
        )
        for name in NAMES
    }  # fmt: skip
    expected = {key: 0.0 for key in got}
    expected.update({
        ("celery_task_received_total", "bg.add"): 4,  # the expired one is revoked on receipt, not received
        ("celery_task_received_total", "bg.fail"): 3,
        ("celery_task_received_total", "bg.retry_once"): 2,
        ("celery_task_received_total", "bg.reject"): 1,
        ("celery_task_started_total", "bg.add"): 4,
        ("celery_task_started_total", "bg.fail"): 3,
        ("celery_task_started_total", "bg.retry_once"): 2,
        ("celery_task_started_total", "bg.reject"): 1,
        ("celery_task_succeeded_total", "bg.add"): 4,
        ("celery_task_succeeded_total", "bg.retry_once"): 1,
        ("celery_task_retried_total", "bg.retry_once"): 1,
        ("celery_task_revoked_total", "bg.add"): 1,
        ("celery_task_rejected_total", "bg.reject"): 1,
        ("celery_task_runtime_count", "bg.add"): 4,  # observed on success, as celery-exporter does
        ("celery_task_runtime_count", "bg.retry_once"): 1,
    })  # fmt: skip
    assert got == expected
    assert v("celery_task_failed_total", "bg.fail", exception="ValueError") == 2
    assert v("celery_task_failed_total", "bg.fail", exception="KeyError") == 1
    assert sample_value(s, "celery_worker_tasks_active", hostname=WORKER_HOST) == 0
    # Queue wait, from the header stamped at publish, for every started task.
    waits = {
        n: sample_value(s, "celery_task_queue_wait_seconds_count", name=n, queue_name=queue) for n in NAMES
    }
    assert waits == {"bg.add": 4, "bg.fail": 3, "bg.retry_once": 2, "bg.reject": 1}
    # Published here: counted here (this process is not in multiprocess mode), the expired one too.
    assert {name: _sent_here(name, queue) for name in NAMES} == {
        "bg.add": 5, "bg.fail": 3, "bg.retry_once": 1, "bg.reject": 1
    }  # fmt: skip
    # The retry was published by the pool: counted in the worker's files, with the worker's host.
    assert (
        sample_value(s, "celery_task_sent_total", name="bg.retry_once", hostname=HERE, queue_name=queue) == 1
    )
    # Which processes wrote (files named ..._<pid>.db, gauges ..._<pid>.db_django.db).
    writers = {int(m[1]) for p in mp.iterdir() if (m := re.search(r"_(\d+)\.db", p.name))}
    if pool == "prefork":  # the main process and pool children wrote files of their own
        assert worker_pid in writers and len(writers) >= 2
    elif multiprocess:  # solo runs the tasks in the worker's main process
        assert writers == {worker_pid}
    else:
        assert writers == set()
