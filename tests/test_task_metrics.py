"""django.tasks metrics in-process (``ImmediateBackend``): every family exact for a known mix of work."""

from __future__ import annotations

import copy
import dataclasses
import datetime

import pytest

pytest.importorskip("django.tasks", reason="django.tasks is new in Django 6.0")

from django.tasks import signals  # noqa: E402
from django.tasks.backends.immediate import ImmediateBackend  # noqa: E402
from prometheus_client import REGISTRY, generate_latest  # noqa: E402

from django_prometheus import task_metrics  # noqa: E402
from django_prometheus.background import LabelCap  # noqa: E402
from tests.bg_project import tasks  # noqa: E402

ADD = ("tests.bg_project.tasks.add", "default", "default")
FAIL = ("tests.bg_project.tasks.fail", "slow", "default")


def value(name: str, labels: tuple[str, ...], **extra: str) -> float:
    task, queue, backend = labels
    found = REGISTRY.get_sample_value(name, {"task": task, "queue": queue, "backend": backend, **extra})
    return found or 0.0


FAMILY_SAMPLES = [
    ("django_tasks_enqueued_total", {}),
    ("django_tasks_started_total", {}),
    ("django_tasks_finished_total", {"status": "successful"}),
    ("django_tasks_finished_total", {"status": "failed"}),
    ("django_tasks_errors_total", {"exception": "builtins.ValueError"}),
    ("django_tasks_errors_total", {"exception": "builtins.KeyError"}),
    ("django_tasks_queue_wait_seconds_count", {}),
    ("django_tasks_duration_seconds_count", {"status": "successful"}),
    ("django_tasks_duration_seconds_count", {"status": "failed"}),
    ("django_tasks_running", {}),
]


def snapshot() -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
    return {
        (which, name, tuple(sorted(extra.items()))): value(name, labels, **extra)
        for which, labels in (("add", ADD), ("fail", FAIL))
        for name, extra in FAMILY_SAMPLES
    }


@pytest.fixture
def installed():
    assert task_metrics.install()
    yield
    task_metrics.uninstall()


def _connected(signal) -> bool:
    return any(str(key[0]).startswith("django_prometheus.tasks") for key, *_ in signal.receivers)


def test_off_nothing_is_connected_or_registered():
    assert not task_metrics.enabled()
    all_three = (signals.task_enqueued, signals.task_started, signals.task_finished)
    assert not any(_connected(s) for s in all_three)
    result = tasks.add.enqueue(1, 2)
    assert result.return_value == 3
    assert b"django_tasks_" not in generate_latest(REGISTRY)


def test_a_known_mix_counts_exactly_in_every_family(installed):
    before = snapshot()
    for i in range(3):
        assert tasks.add.enqueue(i, 1).return_value == i + 1
    failed = [tasks.fail.enqueue("value"), tasks.fail.enqueue("value"), tasks.fail.enqueue("key")]
    assert [r.status for r in failed] == ["FAILED"] * 3
    after = snapshot()
    diff = {key: after[key] - before[key] for key in after}
    expected = {
        ("add", "django_tasks_enqueued_total", ()): 3,
        ("add", "django_tasks_started_total", ()): 3,
        ("add", "django_tasks_finished_total", (("status", "successful"),)): 3,
        ("add", "django_tasks_queue_wait_seconds_count", ()): 3,
        ("add", "django_tasks_duration_seconds_count", (("status", "successful"),)): 3,
        ("fail", "django_tasks_enqueued_total", ()): 3,
        ("fail", "django_tasks_started_total", ()): 3,
        ("fail", "django_tasks_finished_total", (("status", "failed"),)): 3,
        ("fail", "django_tasks_errors_total", (("exception", "builtins.ValueError"),)): 2,
        ("fail", "django_tasks_errors_total", (("exception", "builtins.KeyError"),)): 1,
        ("fail", "django_tasks_queue_wait_seconds_count", ()): 3,
        ("fail", "django_tasks_duration_seconds_count", (("status", "failed"),)): 3,
    }
    assert {k: v for k, v in diff.items() if v} == expected
    # Back to 0 once every task finished.
    assert value("django_tasks_running", ADD) == 0
    assert value("django_tasks_running", FAIL) == 0


def test_running_is_one_while_the_task_runs(installed):
    seen = []

    def during(sender, task_result, **kwargs):
        seen.append(value("django_tasks_running", ADD))

    signals.task_started.connect(during, dispatch_uid="test.during")  # after ours
    try:
        tasks.add.enqueue(1, 1)
    finally:
        signals.task_started.disconnect(dispatch_uid="test.during")
    assert seen == [1.0]
    assert value("django_tasks_running", ADD) == 0


def test_queue_wait_runs_from_run_after_when_it_is_later_than_the_enqueue(installed):
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    base = tasks.add.enqueue(1, 1)
    deferred = copy.copy(base.task)  # as a deferring backend's task (ImmediateBackend refuses run_after)
    object.__setattr__(deferred, "run_after", t0 + datetime.timedelta(seconds=8))
    late = dataclasses.replace(
        base, task=deferred, id="late", enqueued_at=t0, started_at=t0 + datetime.timedelta(seconds=10)
    )
    early = dataclasses.replace(
        base, task=base.task, id="early", enqueued_at=t0, started_at=t0 + datetime.timedelta(seconds=10)
    )
    sum_before = value("django_tasks_queue_wait_seconds_sum", ADD)
    signals.task_started.send(ImmediateBackend, task_result=late)  # 10 s after enqueue, 2 s after run_after
    assert value("django_tasks_queue_wait_seconds_sum", ADD) - sum_before == pytest.approx(2.0)
    signals.task_started.send(ImmediateBackend, task_result=early)
    assert value("django_tasks_queue_wait_seconds_sum", ADD) - sum_before == pytest.approx(12.0)
    for result in (late, early):
        done = dataclasses.replace(result, status="SUCCESSFUL")
        signals.task_finished.send(ImmediateBackend, task_result=done)
    assert value("django_tasks_running", ADD) == 0


def test_a_failing_recorder_never_reaches_the_task(installed, caplog):
    broken = dataclasses.replace(tasks.add.enqueue(1, 1), task=None)  # no .task: our receiver fails
    for receiver in (task_metrics.on_enqueued, task_metrics.on_started, task_metrics.on_finished):
        assert receiver(ImmediateBackend, task_result=broken) is None
    assert any("django.tasks enqueue" in r.getMessage() for r in caplog.records)
    assert tasks.add.enqueue(2, 2).return_value == 4


def test_hostile_label_values_are_capped():
    cap = LabelCap(5)
    for i in range(50):
        cap(f"made.up.name{i}")
    assert cap("yet.another") == "<other>"
    assert cap("made.up.name0") == "made.up.name0"
