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

A Celery task's worker-side cost, next to celery-exporter's model: one op delivers a trivial
task's message through Celery's own per-task worker path in this process (the default
strategy, then the solo pool: ``benchmarks/_celery_app.py``), as a worker does with each task
it takes from the broker; the broker itself is not measured.

- ``celery_task``: nothing recorded, events off (the floor);
- ``celery_task_metrics``: ``PROMETHEUS_CELERY_METRICS = True``, what the worker pays for our
  received/started/succeeded/runtime/active/queue-wait recording;
- ``celery_task_metrics_mp``: the same in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
  set), as in a prefork pool child whose values the worker's exporter port sums;
- ``celery_task_events``: no setting, task events on (``worker_send_task_events``, what
  celery-exporter needs): the worker builds and publishes task-received, task-started and
  task-succeeded, here on kombu's in-memory transport, so a lower bound of that model's
  worker-side cost (a real broker adds a network write per event). celery-exporter also needs
  ``task_send_sent_event``, paid by the publisher, not the worker.

Upstream and bare have no Celery metrics: their ``celery_task_metrics`` rows are the floor.
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


def _celery_settings_on_mp(impl: str) -> dict[str, Any]:
    from .bench_multiprocess import _enter_multiprocess_mode

    _enter_multiprocess_mode()
    return _celery_settings_on(impl)


def _deliver(events: bool) -> Op:
    try:
        from benchmarks._celery_app import deliver
    except ImportError as exc:
        raise NotImplementedError(f"Celery is not installed here: {exc}") from exc
    return deliver(events)


def _build_celery(impl: str) -> Op:
    return _deliver(events=False)


def _build_celery_mp(impl: str) -> Op:
    from .bench_multiprocess import _check_multiprocess

    _check_multiprocess(impl)
    return _deliver(events=False)


def _build_celery_events(impl: str) -> Op:
    return _deliver(events=True)


TASKS_IMMEDIATE = Case("tasks_immediate", _settings, _build)
TASKS_IMMEDIATE_METRICS = Case("tasks_immediate_metrics", _settings_on, _build)
# A task's path is ~1,000x a cache get: a few hundred calls warm it, and keep callgrind runs short.
CELERY_WARMUP = 300
CELERY_TASK = Case("celery_task", _settings, _build_celery, warmup=CELERY_WARMUP)
CELERY_TASK_METRICS = Case("celery_task_metrics", _celery_settings_on, _build_celery, warmup=CELERY_WARMUP)
CELERY_TASK_METRICS_MP = Case(
    "celery_task_metrics_mp", _celery_settings_on_mp, _build_celery_mp, warmup=CELERY_WARMUP
)
CELERY_TASK_EVENTS = Case("celery_task_events", _settings, _build_celery_events, warmup=CELERY_WARMUP)
CASES = [
    TASKS_IMMEDIATE, TASKS_IMMEDIATE_METRICS,
    CELERY_TASK, CELERY_TASK_METRICS, CELERY_TASK_METRICS_MP, CELERY_TASK_EVENTS,
]  # fmt: skip


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
    """A trivial Celery task through a worker's per-task path, nothing recorded (asv)."""

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


class CeleryTaskEvents:
    """The same with task events on, celery-exporter's model (asv)."""

    params = ("bare", "compiled", "pure", "upstream")
    param_names = ["impl"]

    def setup(self, impl: str) -> None:
        self.run = prepare(CELERY_TASK_EVENTS, impl)

    def time_task(self, impl: str) -> None:
        self.run()
