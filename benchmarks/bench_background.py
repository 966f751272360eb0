"""Background work: what ``PROMETHEUS_TASK_METRICS`` adds to a trivial ``django.tasks`` task.

One op enqueues a task that does nothing on Django's ``ImmediateBackend``, which runs it
at once in the caller: the three signals (enqueued, started, finished) fire once each.

- ``tasks_immediate``: the setting off (django_prometheus installed; nothing is
  connected, so compiled and pure should match bare);
- ``tasks_immediate_metrics``: the setting on: every family recorded (counters, the
  running gauge, two histograms).

``bare`` runs without django_prometheus; ``upstream`` (django-prometheus 2.5.0) has no
task metrics, so its rows are its default path. The goal (issue 26): with the setting on,
at most 5% more than with it off. Django 6.0+ only (the case skips before).

A Celery task's worker-side cost, next to celery-exporter's model: one op runs a trivial
task through Celery's tracer in this process (``task.apply()``: the prerun, success and
postrun signals fire as in a pool process; no broker round trip for the task itself).

- ``celery_task``: nothing recorded (the floor);
- ``celery_task_metrics``: ``PROMETHEUS_CELERY_METRICS = True``, what a pool process
  pays for our started/succeeded/runtime/active/queue-wait recording;
- ``celery_task_events``: no setting, but the three task events a worker with events on
  sends per task for celery-exporter (received, started, succeeded), published through
  Celery's event dispatcher on the in-memory transport: a lower bound of that model's
  worker-side cost, which with Redis or RabbitMQ adds a network write per event.
"""

from __future__ import annotations

from typing import Any

from ._harness import Case, Op, prepare


def _settings(impl: str) -> dict[str, Any]:
    apps = ["django.contrib.contenttypes"]
    if impl != "bare":
        apps.append("django_prometheus")
    return {
        "INSTALLED_APPS": apps,
        "DATABASES": {},
        "USE_TZ": True,
        "TASKS": {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}},
    }


def _settings_on(impl: str) -> dict[str, Any]:
    # PROMETHEUS_TASK_METRICS is ours: bare Django and upstream ignore it.
    return {**_settings(impl), "PROMETHEUS_TASK_METRICS": True}


def _build(impl: str) -> Op:
    try:
        from django.tasks import task
    except ImportError as exc:  # Django < 6.0
        raise NotImplementedError(f"django.tasks is not available: {exc}") from exc
    from benchmarks._tasks_app import trivial

    enqueue = task(trivial).enqueue
    return enqueue


def _celery_settings_on(impl: str) -> dict[str, Any]:
    return {**_settings(impl), "PROMETHEUS_CELERY_METRICS": True}


def _celery_task() -> Any:
    from benchmarks._celery_app import trivial

    try:
        return trivial()
    except ImportError as exc:
        raise NotImplementedError(f"Celery is not installed here: {exc}") from exc


def _build_celery(impl: str) -> Op:
    return _celery_task().apply


def _build_celery_events(impl: str) -> Op:
    task = _celery_task()  # first: skips where Celery is not installed
    from benchmarks._celery_app import event_dispatcher

    send, apply = event_dispatcher().send, task.apply

    def op() -> object:
        send("task-received", uuid="bench", name=task.name, args="()", kwargs="{}")
        send("task-started", uuid="bench")
        result = apply()
        send("task-succeeded", uuid="bench", result="None", runtime=0.0001)
        return result

    return op


TASKS_IMMEDIATE = Case("tasks_immediate", _settings, _build)
TASKS_IMMEDIATE_METRICS = Case("tasks_immediate_metrics", _settings_on, _build)
CELERY_TASK = Case("celery_task", _settings, _build_celery)
CELERY_TASK_METRICS = Case("celery_task_metrics", _celery_settings_on, _build_celery)
CELERY_TASK_EVENTS = Case("celery_task_events", _settings, _build_celery_events)
CASES = [TASKS_IMMEDIATE, TASKS_IMMEDIATE_METRICS, CELERY_TASK, CELERY_TASK_METRICS, CELERY_TASK_EVENTS]


class ImmediateTask:
    """Enqueue-and-run of a trivial task on ``ImmediateBackend``, metrics off (asv)."""

    params = ("bare", "compiled", "pure", "upstream")
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.enqueue = prepare(TASKS_IMMEDIATE, impl)

    def time_enqueue_and_run(self, impl: str) -> None:
        self.enqueue()


class ImmediateTaskMetrics:
    """The same with ``PROMETHEUS_TASK_METRICS = True`` (asv)."""

    params = ("bare", "compiled", "pure", "upstream")
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.enqueue = prepare(TASKS_IMMEDIATE_METRICS, impl)

    def time_enqueue_and_run(self, impl: str) -> None:
        self.enqueue()


class CeleryTask:
    """A trivial Celery task through the tracer: nothing recorded, our metrics, task events (asv)."""

    params = ("bare", "compiled", "pure", "upstream")
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.plain = prepare(CELERY_TASK, impl)

    def time_task(self, impl: str) -> None:
        self.plain()


class CeleryTaskMetrics:
    """The same with ``PROMETHEUS_CELERY_METRICS = True`` (asv)."""

    params = ("bare", "compiled", "pure", "upstream")
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.run = prepare(CELERY_TASK_METRICS, impl)

    def time_task(self, impl: str) -> None:
        self.run()
