"""django.tasks metrics from real processes in multiprocess mode: an enqueuing command, two ``db_worker``s.

The enqueuing process counts ``django_tasks_enqueued_total``; the workers (django-tasks-db's
``db_worker``, separate processes sharing PROMETHEUS_MULTIPROC_DIR) count the rest; one
worker's exporter port serves the sum of all three, which must be exact.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("django.tasks", reason="django.tasks is new in Django 6.0")
pytest.importorskip("django_tasks_db", reason="django-tasks-db provides the database backend and db_worker")

from tests.servers import free_port, parse_samples, sample_value  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 120
ADD = {"task": "tests.bg_project.tasks.add", "queue": "default", "backend": "default"}
FAIL = {"task": "tests.bg_project.tasks.fail", "queue": "slow", "backend": "default"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.bg_project.settings",
        PYTHONPATH=str(ROOT),
        DP_BG_TASKS_DB="1",
        DP_BG_DB=str(tmp_path / "tasks.sqlite3"),
        DP_BG_TASK_METRICS="1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "mp"),
        **extra,
    )
    return env


def _django(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_db_workers_in_multiprocess_mode_count_a_known_mix_exactly(tmp_path):
    (tmp_path / "mp").mkdir()
    env = _env(tmp_path)
    _django(env, "migrate", "-v0")
    assert _django(env, "dp_enqueue").strip() == "enqueued 7"
    port = free_port()
    worker = [sys.executable, "-m", "django", "db_worker", "--queue-name", "default,slow",
              "--interval", "0.1", "--no-startup-delay", "--no-reload", "-v0"]  # fmt: skip
    logs = [(tmp_path / f"worker{i}.log").open("wb") for i in range(2)]
    procs = [
        subprocess.Popen(worker, cwd=ROOT, env=_env(tmp_path, DP_BG_EXPORT_PORT=str(port)), stdout=logs[0],
                         stderr=subprocess.STDOUT),
        subprocess.Popen(worker, cwd=ROOT, env=env, stdout=logs[1], stderr=subprocess.STDOUT),
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            for proc in procs:
                assert proc.poll() is None, (tmp_path / "worker0.log").read_text() + (
                    tmp_path / "worker1.log"
                ).read_text()
            try:
                samples = parse_samples(_scrape(f"http://127.0.0.1:{port}/metrics"))
            except OSError:
                samples = {}
            finished = sum(
                sample_value(samples, "django_tasks_finished_total", **labels, status=status)
                for labels in (ADD, FAIL)
                for status in ("successful", "failed")
            )
            running = sum(sample_value(samples, "django_tasks_running", **labels) for labels in (ADD, FAIL))
            # Both: a scrape reads the workers' files one after another while they write, so one
            # scrape can see a task finished and its running gauge not yet down (seen once, loaded).
            if finished >= 7 and running == 0:
                break
            assert time.monotonic() < deadline, (
                f"{finished} of 7 tasks finished, {running} running after {DEADLINE_SECONDS}s"
            )
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        for log in logs:
            log.close()

    def v(name: str, labels: dict[str, str], **extra: str) -> float:
        return sample_value(samples, name, **labels, **extra)

    expected = {
        ("django_tasks_enqueued_total", "add", ""): 4,
        ("django_tasks_enqueued_total", "fail", ""): 3,
        ("django_tasks_started_total", "add", ""): 4,
        ("django_tasks_started_total", "fail", ""): 3,
        ("django_tasks_finished_total", "add", "successful"): 4,
        ("django_tasks_finished_total", "add", "failed"): 0,
        ("django_tasks_finished_total", "fail", "successful"): 0,
        ("django_tasks_finished_total", "fail", "failed"): 3,
        ("django_tasks_queue_wait_seconds_count", "add", ""): 4,
        ("django_tasks_queue_wait_seconds_count", "fail", ""): 3,
        ("django_tasks_duration_seconds_count", "add", "successful"): 4,
        ("django_tasks_duration_seconds_count", "fail", "failed"): 3,
        ("django_tasks_running", "add", ""): 0,
        ("django_tasks_running", "fail", ""): 0,
    }
    which = {"add": ADD, "fail": FAIL}
    got = {key: v(key[0], which[key[1]], **({"status": key[2]} if key[2] else {})) for key in expected}
    assert got == expected
    assert v("django_tasks_errors_total", FAIL, exception="builtins.ValueError") == 2
    assert v("django_tasks_errors_total", FAIL, exception="builtins.KeyError") == 1
    assert v("django_tasks_queue_wait_seconds_bucket", ADD, le="+Inf") == 4
    # The sum is across processes (the enqueuer's files and the workers'), not one process' view.
    pids = {p.stem.rsplit("_", 1)[1] for p in (tmp_path / "mp").glob("*.db")}
    assert len(pids) >= 2
