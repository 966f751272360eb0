"""What the background-work recorders share: their buckets, label caps and one-time failure log.

``django.tasks`` (``task_metrics``), Celery (``celery_metrics``) and management
commands (``command_metrics``) record from signals the frameworks send; a
failure of ours there must never reach the task or the command, so each
recorder catches it and logs it once per place.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("django_prometheus")

#: Buckets of the background histograms (seconds): tasks and commands run from milliseconds to an hour.
BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, float("inf"),
)  # fmt: skip

#: The label value that stands for every value past a label's cap.
OTHER = "<other>"


class LabelCap:
    """At most ``limit`` distinct values of one label; later new ones become ``<other>``.

    Task paths, queue names and exception classes come from code, so they are
    few; the cap keeps a misbehaving producer (a task name built per call) from
    growing a family without bound.
    """

    __slots__ = ("_lock", "_seen", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = value if type(value) is str else str(value)
        if text in self._seen:
            return text
        with self._lock:
            if text in self._seen:
                return text
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(text)
        return text


_logged: set[str] = set()


def log_failure(where: str) -> None:
    """Log the exception being handled, once per ``where`` (instrumentation never breaks the app)."""
    if where not in _logged:
        _logged.add(where)
        logger.exception("django_prometheus: recording %s failed; the work itself is unaffected", where)
