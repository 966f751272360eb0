"""Management command metrics (``PROMETHEUS_COMMAND_METRICS``), delivered before the process ends.

Every run of a chosen command (``manage.py`` or ``call_command``) counts in
``django_command_runs_total{command,outcome}`` and
``django_command_duration_seconds{command,outcome}`` (``success`` | ``error``).
A command's process usually ends before any scrape, so when a run ends its
``django_command_last_success_timestamp_seconds``,
``django_command_last_failure_timestamp_seconds`` and
``django_command_last_duration_seconds`` go

- to a Pushgateway at ``PROMETHEUS_PUSHGATEWAY_URL`` (grouping key
  ``job="django_command"``, ``command``), pushed with POST, which replaces only
  the families pushed: a failing run leaves the last success's timestamp there;
- to ``PROMETHEUS_TEXTFILE_DIR/django_command_<command>.prom`` for
  node_exporter's textfile collector, replaced atomically, the other outcome's
  timestamp carried over from the previous file.

A gateway that does not answer or a directory that cannot be written gives one
warning on the ``django_prometheus`` logger; the command's output, exception
and exit status are never changed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_prometheus import conf
from django_prometheus.background import BUCKETS, LabelCap, log_failure, logger
from django_prometheus.metrics import Counter, Histogram

__all__ = ["LONG_RUNNING", "SETTINGS", "chosen", "deliver", "install", "uninstall"]

#: The settings this module reads.
SETTINGS = frozenset({"PROMETHEUS_COMMAND_METRICS", "PROMETHEUS_PUSHGATEWAY_URL", "PROMETHEUS_TEXTFILE_DIR"})

#: Commands ``PROMETHEUS_COMMAND_METRICS = True`` leaves out: servers, shells and workers run until stopped.
LONG_RUNNING = frozenset(
    {
        "runserver", "runserver_plus", "testserver", "shell", "shell_plus", "dbshell", "test",
        "db_worker", "rqworker", "rqscheduler", "qcluster", "process_tasks", "runworker", "celery",
        "daphne", "runapscheduler",
    }
)  # fmt: skip

#: The Pushgateway's ``job`` grouping key.
JOB = "django_command"
#: Seconds a push may take before it counts as failed.
PUSH_TIMEOUT = 5.0

django_command_runs_total = Counter(
    "django_command_runs_total", "Management command runs, by outcome (success or error).",
    ["command", "outcome"], namespace=conf.NAMESPACE, registry=None,
)  # fmt: skip
django_command_duration_seconds = Histogram(
    "django_command_duration_seconds", "Seconds a management command ran, by outcome.",
    ["command", "outcome"], namespace=conf.NAMESPACE, buckets=BUCKETS, registry=None,
)  # fmt: skip
FAMILIES = (django_command_runs_total, django_command_duration_seconds)

#: The families delivered when a run ends (name without namespace -> help), each labelled by ``command``.
DELIVERED = {
    "django_command_last_success_timestamp_seconds": "Unix time the command last succeeded.",
    "django_command_last_failure_timestamp_seconds": "Unix time the command last failed.",
    "django_command_last_duration_seconds": "Seconds the command's last run took.",
}

_command_cap = LabelCap(500)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def chosen() -> frozenset[str] | None:
    """The commands to record: None for every one but ``LONG_RUNNING``, else the named ones (maybe none)."""
    value = conf.setting("PROMETHEUS_COMMAND_METRICS", False)
    if value is True:
        return None
    if value is False or value is None:
        return frozenset()
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ImproperlyConfigured(
        f"PROMETHEUS_COMMAND_METRICS must be True, False or a list of command names, not {value!r}"
    )


def _command_name(command: Any) -> str:
    # Django finds a command as <app>.management.commands.<name>: its module's last part.
    return type(command).__module__.rpartition(".")[2]


def _record(name: str, outcome: str, seconds: float) -> None:
    label = _command_cap(name)
    django_command_runs_total.labels(label, outcome).inc()
    django_command_duration_seconds.labels(label, outcome).observe(seconds)


def _make_execute(real: Any, wanted: frozenset[str] | None) -> Any:
    def execute(self: Any, *args: Any, **options: Any) -> Any:
        name = _command_name(self)
        if (name in LONG_RUNNING) if wanted is None else (name not in wanted):
            return real(self, *args, **options)
        t0 = time.perf_counter()
        outcome = "error"
        try:
            result = real(self, *args, **options)
            outcome = "success"
            return result
        except SystemExit as exc:
            if exc.code in (None, 0):
                outcome = "success"
            raise
        finally:
            seconds = time.perf_counter() - t0
            try:
                _record(name, outcome, seconds)
                deliver(name, outcome, seconds, time.time())
            except Exception:
                log_failure("a management command run")

    execute.__wrapped__ = real  # type: ignore[attr-defined]
    execute._django_prometheus = True  # type: ignore[attr-defined]
    return execute


def deliver(command: str, outcome: str, seconds: float, now: float) -> None:
    """Push and/or write one finished run's last-run families, as the settings say."""
    url = conf.setting("PROMETHEUS_PUSHGATEWAY_URL", None)
    directory = conf.setting("PROMETHEUS_TEXTFILE_DIR", None)
    if url:
        push(str(url), command, outcome, seconds, now)
    if directory:
        write_textfile(os.fspath(directory), command, outcome, seconds, now)


def _name(family: str) -> str:
    return f"{conf.NAMESPACE}_{family}" if conf.NAMESPACE else family


class _LastRun:
    """A registry-like collector of one run's delivered families, for prometheus_client's push."""

    def __init__(self, command: str, values: dict[str, float]) -> None:
        self.command, self.values = command, values

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for family, value in self.values.items():
            metric = GaugeMetricFamily(_name(family), DELIVERED[family], labels=["command"])
            metric.add_metric([self.command], value)
            yield metric


def _run_values(outcome: str, seconds: float, now: float) -> dict[str, float]:
    last = (
        "django_command_last_success_timestamp_seconds"
        if outcome == "success"
        else "django_command_last_failure_timestamp_seconds"
    )
    return {last: now, "django_command_last_duration_seconds": seconds}


def push(url: str, command: str, outcome: str, seconds: float, now: float) -> bool:
    """POST this run's families to the Pushgateway; False (and one warning) when it fails."""
    from prometheus_client import pushadd_to_gateway

    try:
        pushadd_to_gateway(
            url, job=JOB, registry=_LastRun(command, _run_values(outcome, seconds, now)),  # type: ignore[arg-type]
            grouping_key={"command": command}, timeout=PUSH_TIMEOUT,
        )  # fmt: skip
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        logger.warning("django_prometheus: could not push metrics of command %r to %s: %s", command, url, exc)
        return False
    return True


def textfile_path(directory: str, command: str) -> str:
    """The file of ``command`` in ``directory`` (node_exporter reads ``*.prom``)."""
    return os.path.join(directory, f"django_command_{_SAFE_NAME.sub('_', command)}.prom")


def _previous(path: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return {}
    found = {}
    with contextlib.suppress(Exception):  # a damaged file is replaced whole
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[sample.name] = sample.value
    return found


def write_textfile(directory: str, command: str, outcome: str, seconds: float, now: float) -> bool:
    """Replace ``command``'s file atomically; False (and one warning) when it cannot be written."""
    path = textfile_path(directory, command)
    values = {_name(family): value for family, value in _run_values(outcome, seconds, now).items()}
    previous = _previous(path)
    lines = []
    for family, doc in DELIVERED.items():
        name = _name(family)
        value = values.get(name, previous.get(name))
        if value is None:
            continue
        label = command.replace("\\", "\\\\").replace('"', '\\"')
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} gauge", f'{name}{{command="{label}"}} {value!r}']
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".django_command_", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o644)  # node_exporter usually runs as another user
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        logger.warning(
            "django_prometheus: could not write metrics of command %r to %s: %s", command, path, exc
        )
        return False
    return True


_lock = threading.Lock()
_installed: Any = None  # the real BaseCommand.execute while installed


def install() -> bool:
    """Wrap ``BaseCommand.execute`` for the chosen commands; False when none is chosen."""
    global _installed
    wanted = chosen()
    if wanted is not None and not wanted:
        return False
    from django.core.management.base import BaseCommand

    with _lock:
        if _installed is None:
            from prometheus_client import REGISTRY

            for family in FAMILIES:
                REGISTRY.register(family)
            _installed = BaseCommand.execute
        BaseCommand.execute = _make_execute(_installed, wanted)  # type: ignore[method-assign]
    return True


def uninstall() -> None:
    """Put ``BaseCommand.execute`` back and unregister the families."""
    global _installed
    from django.core.management.base import BaseCommand

    with _lock:
        if _installed is None:
            return
        from prometheus_client import REGISTRY

        BaseCommand.execute = _installed  # type: ignore[method-assign]
        for family in FAMILIES:
            REGISTRY.unregister(family)
        _installed = None
