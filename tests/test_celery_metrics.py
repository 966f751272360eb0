"""Celery metrics against a real Redis broker and a real prefork worker (2 processes), multiprocess mode.

This process publishes a known mix (and counts ``celery_task_sent_total`` itself); the worker's
main process counts received and revoked tasks, its two pool children the rest, all in one
PROMETHEUS_MULTIPROC_DIR, served summed by the worker's exporter port. Every family must be
exact, the active gauge back to 0.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("celery", reason="Celery is an optional integration")

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from prometheus_client import REGISTRY, generate_latest  # noqa: E402

from django_prometheus import celery_metrics  # noqa: E402
from tests.servers import Samples, free_port, parse_samples  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 120
WORKER_HOST = "bghost"  # the worker is named w1@bghost
HERE = socket.gethostname()
Q = "celery"


@pytest.fixture
def broker(require_service) -> str:
    require_service("redis")
    url = settings.REDIS_URL.rstrip("/") + "/7"
    client = redis.Redis.from_url(url)
    client.flushdb()  # no message left by an earlier run
    client.close()
    return url


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
    for signal in (signals.before_task_publish, signals.task_prerun, signals.task_received):
        assert not any("django_prometheus" in str(key) for key, *_ in signal.receivers)
    assert b"celery_task_" not in generate_latest(REGISTRY)


def test_host_of_takes_the_host_part_of_a_node_name():
    assert celery_metrics.host_of("worker1@web-3") == "web-3"
    assert celery_metrics.host_of("web-4") == "web-4"


def sample_value(samples: Samples, family: str, /, **labels: str) -> float:
    """``tests.servers.sample_value``, for families with a ``name`` label."""
    return samples.get((family, frozenset(labels.items())), 0.0)


def _scrape(port: int) -> Samples:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return parse_samples(response.read().decode())
    except OSError:
        return {}


def _sent_here(name: str) -> float:
    labels = {"name": name, "hostname": HERE, "queue_name": Q}
    return REGISTRY.get_sample_value("celery_task_sent_total", labels) or 0.0


def test_a_prefork_worker_counts_a_known_mix_exactly(app, broker, tmp_path):
    app, tasks = app
    mp = tmp_path / "mp"
    mp.mkdir()
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.bg_project.settings", PYTHONPATH=str(ROOT), DP_BG_BROKER_URL=broker,
        DP_BG_CELERY_METRICS="1", DP_BG_EXPORT_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(mp),
    )  # fmt: skip
    names = ("bg.add", "bg.fail", "bg.retry_once", "bg.reject")
    sent_before = {name: _sent_here(name) for name in names}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.bg_project.celeryapp", "worker", "-P", "prefork",
             "-c", "2", "-n", f"w1@{WORKER_HOST}", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        for _ in range(4):
            tasks.add.delay(1, 2)
        tasks.fail.delay("value")
        tasks.fail.delay("value")
        tasks.fail.delay("key")
        tasks.retry_once.delay()
        tasks.reject.delay()
        expired = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        tasks.add.apply_async((0, 0), expires=expired)

        w = {"hostname": WORKER_HOST, "queue_name": Q}
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            assert worker.poll() is None, log_path.read_text()
            s = _scrape(port)
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
            assert time.monotonic() < deadline, (
                f"not done in {DEADLINE_SECONDS}s: {done}\n{log_path.read_text()}"
            )
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    def v(family: str, name: str, **extra: str) -> float:
        return sample_value(s, family, name=name, **w, **extra)

    got = {
        (family, name): v(family, name)
        for family in (
            "celery_task_received_total", "celery_task_started_total", "celery_task_succeeded_total",
            "celery_task_retried_total", "celery_task_revoked_total", "celery_task_rejected_total",
            "celery_task_runtime_count",
        )
        for name in names
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
    waits = {n: sample_value(s, "celery_task_queue_wait_seconds_count", name=n, queue_name=Q) for n in names}
    assert waits == {"bg.add": 4, "bg.fail": 3, "bg.retry_once": 2, "bg.reject": 1}
    # Published here: counted here (this process is not in multiprocess mode), the expired one too.
    sent = {name: _sent_here(name) - sent_before[name] for name in names}
    assert sent == {"bg.add": 5, "bg.fail": 3, "bg.retry_once": 1, "bg.reject": 1}
    # The retry was published by a pool child: counted in the worker's files, with the worker's host.
    assert sample_value(s, "celery_task_sent_total", name="bg.retry_once", hostname=HERE, queue_name=Q) == 1
    # Two pool children and the main process wrote files of their own.
    assert len({p.stem.rsplit("_", 1)[1] for p in mp.glob("*.db")}) >= 2
