"""A Celery app with a trivial task, for ``bench_background``.

Celery is imported on first use, not here: asv imports every module here to discover the
benchmarks, also where Celery is not installed (then the cases skip).
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def trivial() -> Any:
    """The app's trivial task (raises ImportError without Celery)."""
    from celery import Celery

    app = Celery("bench", broker="memory://", set_as_current=False)
    app.conf.update(task_always_eager=False, worker_send_task_events=True)

    @app.task(name="bench.trivial")
    def trivial() -> None:
        return None

    return trivial


def event_dispatcher() -> Any:
    """What a worker with task events on (``-E``, celery-exporter's model) publishes through."""
    app = trivial().app
    connection = app.connection_for_write()
    return app.events.Dispatcher(connection, hostname="w1@bench", enabled=True, buffer_while_offline=False)
