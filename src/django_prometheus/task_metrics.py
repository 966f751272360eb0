"""``django.tasks`` metrics (``PROMETHEUS_TASK_METRICS``), from the framework's three signals.

Django 6.0's ``task_enqueued``, ``task_started`` and ``task_finished`` each carry
the ``TaskResult``; any backend that sends them (``ImmediateBackend`` in the
caller's process, a database worker in its own) is observed. Labels: ``task``
(the function's module path), ``queue`` (its queue name), ``backend`` (the
backend alias). Nothing is connected or registered while the setting is off.
In multiprocess mode the cells write to ``PROMETHEUS_MULTIPROC_DIR`` like every
other family, so a worker's processes add up exactly; ``django_tasks_running``
is summed over live processes.

Not named ``tasks.py``: Celery's ``autodiscover_tasks()`` imports that module of every app.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django_prometheus import conf
from django_prometheus.background import BUCKETS, LabelCap, SignalHookup, log_failure
from django_prometheus.metrics import Counter, Gauge, Histogram

__all__ = ["SETTINGS", "enabled", "install", "uninstall"]

#: The setting this module reads.
SETTINGS = frozenset({"PROMETHEUS_TASK_METRICS"})

_LABELS = ["task", "queue", "backend"]

django_tasks_enqueued_total = Counter(
    "django_tasks_enqueued_total", "django.tasks tasks enqueued.", _LABELS,
    namespace=conf.NAMESPACE, registry=None,
)  # fmt: skip
django_tasks_started_total = Counter(
    "django_tasks_started_total", "django.tasks tasks started by a worker.", _LABELS,
    namespace=conf.NAMESPACE, registry=None,
)  # fmt: skip
django_tasks_finished_total = Counter(
    "django_tasks_finished_total", "django.tasks tasks finished, by status (successful or failed).",
    [*_LABELS, "status"], namespace=conf.NAMESPACE, registry=None,
)  # fmt: skip
django_tasks_errors_total = Counter(
    "django_tasks_errors_total", "django.tasks tasks failed, by the exception's class path.",
    [*_LABELS, "exception"], namespace=conf.NAMESPACE, registry=None,
)  # fmt: skip
django_tasks_queue_wait_seconds = Histogram(
    "django_tasks_queue_wait_seconds",
    "Seconds from enqueue (or run_after, if later) to the start of a django.tasks task.",
    _LABELS, namespace=conf.NAMESPACE, buckets=BUCKETS, registry=None,
)  # fmt: skip
django_tasks_duration_seconds = Histogram(
    "django_tasks_duration_seconds", "Seconds a django.tasks task ran, by status.",
    [*_LABELS, "status"], namespace=conf.NAMESPACE, buckets=BUCKETS, registry=None,
)  # fmt: skip
django_tasks_running = Gauge(
    "django_tasks_running", "django.tasks tasks running now.", _LABELS,
    namespace=conf.NAMESPACE, registry=None, multiprocess_mode="livesum",
)  # fmt: skip

FAMILIES = (
    django_tasks_enqueued_total,
    django_tasks_started_total,
    django_tasks_finished_total,
    django_tasks_errors_total,
    django_tasks_queue_wait_seconds,
    django_tasks_duration_seconds,
    django_tasks_running,
)

# Label values come from code (task functions, queue names, aliases); the caps bound a producer
# that makes them up per call.
_task_cap, _queue_cap, _exception_cap = LabelCap(1000), LabelCap(100), LabelCap(200)


class _Cells:
    """One (task, queue, backend)'s cells, resolved once."""

    __slots__ = (
        "duration_failed", "duration_ok", "enqueued", "errors", "failed", "labels", "ok", "running",
        "started", "wait", "queue_name", "backend",
    )  # fmt: skip

    def __init__(self, task: str, queue: str, backend: str) -> None:
        labels = self.labels = (task, queue, backend)
        self.enqueued = django_tasks_enqueued_total.labels(*labels)
        self.started = django_tasks_started_total.labels(*labels)
        self.ok = django_tasks_finished_total.labels(*labels, "successful")
        self.failed = django_tasks_finished_total.labels(*labels, "failed")
        self.wait = django_tasks_queue_wait_seconds.labels(*labels)
        self.duration_ok = django_tasks_duration_seconds.labels(*labels, "successful")
        self.duration_failed = django_tasks_duration_seconds.labels(*labels, "failed")
        self.running = django_tasks_running.labels(*labels)
        self.errors: dict[str, Any] = {}


_cells: dict[tuple[Any, Any, Any], _Cells] = {}
# The fast path: a task function's last (queue, backend) cells, found by the function alone
# (functions hash by identity; a Task is a dataclass whose hash would run Python code).
_by_func: dict[Any, _Cells] = {}
_lock = threading.Lock()
# Results started in this process and not finished yet -> (perf_counter() at the start, cells):
# the running gauge goes down only for these, and their duration needs no datetime arithmetic.
_running: dict[Any, tuple[float, _Cells]] = {}
_clock = time.perf_counter


def _cells_of(result: Any) -> _Cells:
    task = result.task
    func, queue, backend = task.func, task.queue_name, result.backend
    found = _by_func.get(func)
    if found is not None and found.queue_name == queue and found.backend == backend:
        return found
    key = (func, queue, backend)
    found = _cells.get(key)
    if found is None:
        with _lock:
            found = _cells.get(key)
            if found is None:
                found = _cells[key] = _Cells(_task_cap(task.module_path), _queue_cap(queue), str(backend))
                found.queue_name, found.backend = queue, backend
    _by_func[func] = found
    return found


def on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    try:
        _cells_of(task_result).enqueued.inc()
    except Exception:
        log_failure("a django.tasks enqueue")


def on_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    try:
        cells = _cells_of(task_result)
        cells.started.inc()
        started, enqueued = task_result.started_at, task_result.enqueued_at
        if started is not None and enqueued is not None:
            run_after = task_result.task.run_after
            ready = run_after if run_after is not None and run_after > enqueued else enqueued
            wait = (started - ready).total_seconds()
            cells.wait.observe(wait if wait > 0.0 else 0.0)
        key = task_result.id
        if key not in _running:
            _running[key] = (_clock(), cells)
            cells.running.inc()
    except Exception:
        log_failure("a django.tasks start")


def on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    try:
        failed = task_result.status == "FAILED"
        begun = _running.pop(task_result.id, None)
        if begun is not None:  # started here: the monotonic clock, and the start's cells
            t0, cells = begun
            cells.running.dec()
            seconds: float | None = _clock() - t0
        else:  # started elsewhere (or before the setting was on): the result's own times
            cells = _cells_of(task_result)
            started, finished = task_result.started_at, task_result.finished_at
            seconds = None if started is None or finished is None else (finished - started).total_seconds()
        if seconds is not None:
            (cells.duration_failed if failed else cells.duration_ok).observe(
                seconds if seconds > 0.0 else 0.0
            )
        if failed:
            errors = task_result.errors
            path = errors[-1].exception_class_path if errors else "<unknown>"
            counter = cells.errors.get(path)
            if counter is None:
                counter = django_tasks_errors_total.labels(*cells.labels, _exception_cap(path))
                cells.errors[path] = counter
            counter.inc()
        # Last: a reader that sees the task finished sees everything else about it.
        (cells.failed if failed else cells.ok).inc()
    except Exception:
        log_failure("a django.tasks finish")


def _connections() -> list[tuple[Any, Any]]:
    from django.tasks import signals  # ImportError before Django 6.0

    return [
        (signals.task_enqueued, on_enqueued),
        (signals.task_started, on_started),
        (signals.task_finished, on_finished),
    ]


# enabled(): PROMETHEUS_TASK_METRICS; install() is False where django.tasks is missing (Django < 6.0).
_hookup = SignalHookup("PROMETHEUS_TASK_METRICS", FAMILIES, _connections, "django_prometheus.tasks.")
enabled, install, uninstall = _hookup.enabled, _hookup.install, _hookup.uninstall
