"""A Celery app with a trivial task, for ``bench_background`` (imported only after settings exist)."""

from celery import Celery

app = Celery("bench", broker="memory://", set_as_current=False)
app.conf.update(task_always_eager=False, worker_send_task_events=True)


@app.task(name="bench.trivial")
def trivial() -> None:
    return None


def event_dispatcher():
    """What a worker with task events on (``-E``, celery-exporter's model) publishes through."""
    connection = app.connection_for_write()
    return app.events.Dispatcher(connection, hostname="w1@bench", enabled=True, buffer_while_offline=False)
