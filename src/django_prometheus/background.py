"""What the background-work recorders share: buckets, label caps, a one-time failure log, their hook-up.

``django.tasks`` (``task_metrics``), Celery (``celery_metrics``) and management
commands (``command_metrics``) record from signals the frameworks send; a
failure of ours there must never reach the task or the command, so each
recorder catches it and logs it once per place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

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


class SignalHookup:
    """A kind of work's switch (``setting``), and its families and receivers, hooked up once.

    ``connections()`` names the ``(signal, receiver)`` pairs; it raises ImportError
    where the framework is missing, and then nothing is installed. Each receiver is
    connected strongly under ``uid_prefix + its name``. A module exposes the three
    methods as its ``enabled``, ``install`` and ``uninstall``.
    """

    __slots__ = ("_connections", "_installed", "_lock", "families", "setting", "uid_prefix")

    def __init__(
        self,
        setting: str,
        families: Iterable[Any],
        connections: Callable[[], list[tuple[Any, Any]]],
        uid_prefix: str,
    ) -> None:
        self.setting = setting
        self.families = tuple(families)
        self.uid_prefix = uid_prefix
        self._connections = connections
        self._installed = False
        self._lock = threading.Lock()

    def enabled(self) -> bool:
        """Whether the setting asks for this kind of work to be recorded (default False)."""
        from django_prometheus import conf

        return bool(conf.setting(self.setting, False))

    def install(self) -> bool:
        """Connect the receivers and register the families (once); False where the framework is missing."""
        try:
            connections = self._connections()
        except ImportError:
            return False
        with self._lock:
            if not self._installed:
                from prometheus_client import REGISTRY

                for family in self.families:
                    REGISTRY.register(family)
                for signal, receiver in connections:
                    signal.connect(receiver, weak=False, dispatch_uid=self.uid_prefix + receiver.__name__)
                self._installed = True
        return True

    def uninstall(self) -> None:
        """Disconnect the receivers and unregister the families (their values are kept)."""
        with self._lock:
            if not self._installed:
                return
            from prometheus_client import REGISTRY

            for signal, receiver in self._connections():
                signal.disconnect(receiver, dispatch_uid=self.uid_prefix + receiver.__name__)
            for family in self.families:
                REGISTRY.unregister(family)
            self._installed = False
