"""A trivial Celery task delivered through a worker's own per-task path, for ``bench_background``.

Imported only after Django's settings exist. ``deliver(events)`` returns one op: a message
as the broker hands it over (protocol 2, JSON, with the publish stamp our publisher adds) goes
through Celery's default strategy (``celery.worker.strategy.default``: the ``task_received``
signal, the ``task-received`` event), then the solo pool (``on_accepted``: ack and
``task-started``; the tracer: ``task_prerun``, ``task_success``, ``task_postrun``;
``on_success``: ``task-succeeded``) in this process, as ``celery worker -P solo`` runs it.
Only the consumer around the strategy is stood in for (no broker loop, no timer, no rate
limits); the parts each task goes through are Celery's and kombu's own.

With ``events`` the consumer's event dispatcher is enabled (``worker_send_task_events``,
``-E``: what celery-exporter needs) on kombu's in-memory transport, so the three events are
built and published in full but not sent over a network: a lower bound of that model's cost.
"""

from __future__ import annotations

import functools
import time
import uuid
from types import SimpleNamespace
from typing import Any

HOSTNAME = "w1@bench"
#: The publish stamp our publisher adds (``celery_metrics.HEADER``), in every variant's messages
#: alike; spelled out because bare and upstream runs have no ``celery_metrics`` to import.
HEADER = "django_prometheus_published_at"


@functools.cache
def _app() -> tuple[Any, Any]:
    """The app and its trivial task, made on first use: asv imports every module here to
    discover the benchmarks, also where Celery is not installed (ImportError then)."""
    from celery import Celery

    app = Celery("bench", broker="memory://")
    app.conf.update(worker_send_task_events=True, task_ignore_result=True)

    @app.task(name="bench.trivial")
    def trivial() -> None:
        return None

    return app, trivial


class _Consumer(SimpleNamespace):
    """What the strategy reads of a worker's consumer; hashable, as signal senders must be."""

    __hash__ = object.__hash__


def _message(channel: Any) -> Any:
    """A message as the broker delivers it to the worker (a fresh one per task, as kombu makes)."""
    from kombu.message import Message
    from kombu.serialization import dumps

    app, trivial = _app()
    task_id = str(uuid.uuid4())
    sent = app.amqp.as_task_v2(task_id, trivial.name, args=(), kwargs={})
    content_type, encoding, body = dumps(sent.body, serializer="json")
    headers = {**sent.headers, HEADER: time.time()}
    return Message(
        body=body, channel=channel, delivery_tag=task_id, content_type=content_type,
        content_encoding=encoding, headers=headers, properties=sent.properties,
        delivery_info={"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": False},
    )  # fmt: skip


def deliver(events: bool) -> Any:
    """The op: one task message through the strategy and the solo pool; events sent if ``events``."""
    from celery.app.trace import build_tracer, setup_worker_optimizations
    from celery.concurrency.solo import TaskPool
    from celery.worker import state
    from celery.worker.strategy import default as default_strategy

    app, trivial = _app()
    app.set_current()  # the pool's tracer looks the task up on the current app, as in a worker
    # What a worker does before it consumes: its tracing fast path, each task's tracer.
    setup_worker_optimizations(app, HOSTNAME)
    trivial.__trace__ = build_tracer(trivial.name, trivial, app.loader, HOSTNAME, app=app)
    connection = app.connection_for_write()
    channel = connection.default_channel
    pool = TaskPool()
    pool.start()
    consumer = _Consumer(
        hostname=HOSTNAME, connection_errors=(), pool=pool,
        # A worker makes its dispatcher in any case; -E (worker_send_task_events) enables it.
        event_dispatcher=app.events.Dispatcher(connection, hostname=HOSTNAME, enabled=events),
        timer=SimpleNamespace(call_at=None), apply_eta_task=None, disable_rate_limits=True,
        task_buckets={}, _limit_task=None, _limit_post_eta=None,
        on_task_request=lambda request: request.execute_using_pool(pool),  # WorkController._process_task
        controller=SimpleNamespace(state=state),
    )  # fmt: skip
    handle = default_strategy(trivial, app, consumer)

    def op() -> None:
        message = _message(channel)
        handle(message, None, message.ack_log_error, message.reject_log_error, None)

    return op
