"""Celery metrics (``PROMETHEUS_CELERY_METRICS``), from Celery's signals, with celery-exporter's names.

Recorded where the work happens, without task events: the publishing process
counts ``celery_task_sent_total`` and stamps a publish time in the message
headers; a worker's main process counts received, revoked and rejected tasks;
its pool processes (prefork children, threads or solo) count started,
succeeded, failed, retried and rejected (``Reject`` raised) tasks, the runtime of successful ones, the tasks
active now and the queue wait (publish stamp to start). Family and label names
are celery-exporter's (``name``, ``hostname``, ``queue_name``, ``exception`` =
the class name; ``hostname`` = the host part of the worker's node name), so its
dashboards and alerts work unchanged. In multiprocess mode the pool children
write to ``PROMETHEUS_MULTIPROC_DIR`` and the worker's exporter port serves
their sum.

Not named ``celery.py`` so that nothing in the package can shadow Celery itself.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from django_prometheus import conf
from django_prometheus.background import BUCKETS, LabelCap, SignalHookup, log_failure
from django_prometheus.metrics import Counter, Gauge, Histogram

__all__ = ["HEADER", "SETTINGS", "enabled", "install", "uninstall"]

#: The setting this module reads.
SETTINGS = frozenset({"PROMETHEUS_CELERY_METRICS"})

#: The message header the publisher stamps with its clock (Unix seconds) for the queue wait.
HEADER = "django_prometheus_published_at"
#: ``queue_name`` when a message names no routing key (Celery's default queue).
DEFAULT_QUEUE = "celery"

_LABELS = ["name", "hostname", "queue_name"]


def _counter(name: str, doc: str, labels: list[str] = _LABELS) -> Counter:
    return Counter(name, doc, labels, namespace=conf.NAMESPACE, registry=None)


celery_task_sent_total = _counter("celery_task_sent_total", "Celery tasks published.")
celery_task_received_total = _counter("celery_task_received_total", "Celery tasks received by a worker.")
celery_task_started_total = _counter("celery_task_started_total", "Celery tasks started.")
celery_task_succeeded_total = _counter("celery_task_succeeded_total", "Celery tasks that succeeded.")
celery_task_failed_total = _counter(
    "celery_task_failed_total", "Celery tasks that failed, by exception class.", [*_LABELS, "exception"]
)
celery_task_retried_total = _counter("celery_task_retried_total", "Celery tasks retried.")
celery_task_revoked_total = _counter("celery_task_revoked_total", "Celery tasks revoked.")
celery_task_rejected_total = _counter("celery_task_rejected_total", "Celery tasks rejected by a worker.")
celery_task_runtime = Histogram(
    "celery_task_runtime", "Seconds a successful Celery task ran.", _LABELS,
    namespace=conf.NAMESPACE, buckets=BUCKETS, registry=None,
)  # fmt: skip
celery_worker_tasks_active = Gauge(
    "celery_worker_tasks_active", "Celery tasks running now on a worker host.", ["hostname"],
    namespace=conf.NAMESPACE, registry=None, multiprocess_mode="livesum",
)  # fmt: skip
celery_task_queue_wait_seconds = Histogram(
    "celery_task_queue_wait_seconds", "Seconds from publish to the start of a Celery task.",
    ["name", "queue_name"], namespace=conf.NAMESPACE, buckets=BUCKETS, registry=None,
)  # fmt: skip

FAMILIES = (
    celery_task_sent_total,
    celery_task_received_total,
    celery_task_started_total,
    celery_task_succeeded_total,
    celery_task_failed_total,
    celery_task_retried_total,
    celery_task_revoked_total,
    celery_task_rejected_total,
    celery_task_runtime,
    celery_worker_tasks_active,
    celery_task_queue_wait_seconds,
)

_name_cap, _host_cap, _queue_cap, _exception_cap = LabelCap(1000), LabelCap(200), LabelCap(100), LabelCap(200)
_cells: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()
_publisher_host = socket.gethostname()


def _cell(family: Any, *values: Any) -> Any:
    key = (family, *values)
    cell = _cells.get(key)
    if cell is None:
        with _lock:
            cell = _cells.get(key)
            if cell is None:
                cell = _cells[key] = family.labels(*values)
    return cell


def host_of(nodename: object) -> str:
    """The host part of a worker's node name (``worker1@web-3`` -> ``web-3``), as celery-exporter says."""
    if not nodename:
        return _host_cap(_publisher_host)
    text = str(nodename)
    return _host_cap(text.partition("@")[2] or text)


def _queue(delivery_info: Any) -> str:
    if isinstance(delivery_info, dict):
        return _queue_cap(delivery_info.get("routing_key") or delivery_info.get("queue") or DEFAULT_QUEUE)
    return DEFAULT_QUEUE


def _request_labels(request: Any, name: Any = None) -> tuple[str, str, str]:
    name = name or getattr(request, "task_name", None) or getattr(request, "name", None)
    name = name or getattr(request, "task", None)
    return (
        _name_cap(name or "<unknown>"),
        host_of(getattr(request, "hostname", None)),
        _queue(getattr(request, "delivery_info", None)),
    )


# --- the publishing process -------------------------------------------------------------


def before_publish(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
    try:
        if isinstance(headers, dict):
            headers[HEADER] = time.time()
    except Exception:
        log_failure("a Celery publish")


def after_publish(sender: Any = None, routing_key: Any = None, exchange: Any = None, **kwargs: Any) -> None:
    try:
        queue = _queue_cap(routing_key or exchange or DEFAULT_QUEUE)
        name = _name_cap(sender or "<unknown>")
        _cell(celery_task_sent_total, name, _host_cap(_publisher_host), queue).inc()
    except Exception:
        log_failure("a Celery publish")


# --- the worker's main process ----------------------------------------------------------


def on_received(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    try:
        _cell(celery_task_received_total, *_request_labels(request)).inc()
    except Exception:
        log_failure("a Celery task received")


def on_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    try:
        _cell(celery_task_revoked_total, *_request_labels(request, getattr(sender, "name", None))).inc()
    except Exception:
        log_failure("a Celery task revoked")


def on_rejected(sender: Any = None, message: Any = None, **kwargs: Any) -> None:
    # A message the worker could not take as a task (invalid, or of an unknown type).
    try:
        headers = getattr(message, "headers", None) or {}
        name = _name_cap(headers.get("task") or "<unknown>")
        host = host_of(getattr(sender, "hostname", None))
        _cell(celery_task_rejected_total, name, host, _queue(getattr(message, "delivery_info", None))).inc()
    except Exception:
        log_failure("a Celery task rejected")


# --- the pool (prefork children, threads, solo) -------------------------------------------

#: (task id, thread) -> perf_counter at the start, for the runtime. Keyed by the thread too: a
#: retried task keeps its id, and under the threads pool its next run can start in another thread
#: before this run's postrun, which would otherwise drop the next run's start.
_started: dict[tuple[Any, int], float] = {}


def _published_at(request: Any) -> float | None:
    stamp = getattr(request, HEADER, None)
    if stamp is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            stamp = headers.get(HEADER)
    try:
        return float(stamp) if stamp is not None else None
    except (TypeError, ValueError):
        return None


def on_prerun(sender: Any = None, task_id: Any = None, task: Any = None, **kwargs: Any) -> None:
    try:
        now = time.time()
        _started[(task_id, threading.get_ident())] = time.perf_counter()
        request = task.request
        name, host, queue = _request_labels(request, task.name)
        _cell(celery_task_started_total, name, host, queue).inc()
        _cell(celery_worker_tasks_active, host).inc()
        published = _published_at(request)
        if published is not None:
            _cell(celery_task_queue_wait_seconds, name, queue).observe(max(now - published, 0.0))
    except Exception:
        log_failure("a Celery task start")


def on_postrun(
    sender: Any = None, task_id: Any = None, task: Any = None, state: Any = None, **kwargs: Any
) -> None:
    try:
        _started.pop((task_id, threading.get_ident()), None)
        request = task.request
        _cell(celery_worker_tasks_active, host_of(getattr(request, "hostname", None))).dec()
        if state == "REJECTED":  # the task raised Reject: celery-exporter's task-rejected event
            _cell(celery_task_rejected_total, *_request_labels(request, task.name)).inc()
    except Exception:
        log_failure("a Celery task end")


def on_success(sender: Any = None, **kwargs: Any) -> None:
    try:
        request = sender.request
        labels = _request_labels(request, sender.name)
        t0 = _started.get((request.id, threading.get_ident()))
        if t0 is not None:  # first, so that a scrape that sees the success sees its runtime too
            _cell(celery_task_runtime, *labels).observe(time.perf_counter() - t0)
        _cell(celery_task_succeeded_total, *labels).inc()
    except Exception:
        log_failure("a Celery task success")


def on_failure(sender: Any = None, exception: Any = None, **kwargs: Any) -> None:
    try:
        labels = _request_labels(sender.request, sender.name)
        _cell(celery_task_failed_total, *labels, _exception_cap(type(exception).__name__)).inc()
    except Exception:
        log_failure("a Celery task failure")


def on_retry(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
    try:
        _cell(celery_task_retried_total, *_request_labels(request, getattr(sender, "name", None))).inc()
    except Exception:
        log_failure("a Celery task retry")


def _connections() -> list[tuple[Any, Any]]:
    from celery import signals

    return [
        (signals.before_task_publish, before_publish),
        (signals.after_task_publish, after_publish),
        (signals.task_received, on_received),
        (signals.task_revoked, on_revoked),
        (signals.task_rejected, on_rejected),
        (signals.task_prerun, on_prerun),
        (signals.task_postrun, on_postrun),
        (signals.task_success, on_success),
        (signals.task_failure, on_failure),
        (signals.task_retry, on_retry),
    ]


# enabled(): PROMETHEUS_CELERY_METRICS; install() is False where Celery is not importable.
_hookup = SignalHookup("PROMETHEUS_CELERY_METRICS", FAMILIES, _connections, "django_prometheus.")
enabled, install, uninstall = _hookup.enabled, _hookup.install, _hookup.uninstall
