"""What every instrumented database backend shares: cells per (alias, vendor), cursor classes, the mixin."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from django_prometheus._core import _db
from django_prometheus.db.metrics import (
    connection_errors_total,
    connections_total,
    errors_total,
    execute_many_total,
    execute_total,
    query_duration_seconds,
)

__all__ = ["DatabaseWrapperMixin", "DBCells", "ExceptionCounterByType", "ExportingCursorWrapper"]

logger = logging.getLogger(__name__)


class ExceptionCounterByType:
    """Context manager counting the exception leaving its block by type (the exception still propagates).

    ``counter`` is a labelled counter; the exception's class name goes in the
    ``type_label`` label, ``extra_labels`` fill the others.
    """

    def __init__(self, counter: Any, type_label: str = "type", extra_labels: dict[str, str] | None = None):
        self._counter = counter
        self._type_label = type_label
        self._labels = dict(extra_labels or {})

    def __enter__(self) -> None:
        pass

    def __exit__(
        self, typ: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if typ is not None:
            self._counter.labels(**{**self._labels, self._type_label: typ.__name__}).inc()


class DBCells:
    """The cells of one (alias, vendor), resolved once; ``for_labels`` shares them per pair."""

    __slots__ = (
        "alias",
        "connection_errors",
        "connections",
        "duration",
        "errors",
        "execute",
        "many",
        "vendor",
    )

    _shared: dict[tuple[str, str], DBCells] = {}
    _lock = threading.Lock()

    def __init__(self, alias: str, vendor: str) -> None:
        self.alias = alias
        self.vendor = vendor
        self.connections = connections_total.labels(alias, vendor)
        self.connection_errors = connection_errors_total.labels(alias, vendor)
        self.execute = execute_total.labels(alias, vendor)
        self.many = execute_many_total.labels(alias, vendor)
        self.duration = query_duration_seconds.labels(alias, vendor)
        # Exception class -> cell; filled on the (cold) error path.
        self.errors: dict[type, Any] = {}

    @classmethod
    def for_labels(cls, alias: str, vendor: str) -> DBCells:
        key = (alias, vendor)
        cells = cls._shared.get(key)
        if cells is None:
            with cls._lock:
                cells = cls._shared.get(key)
                if cells is None:
                    cells = cls._shared[key] = cls(alias, vendor)
        return cells

    def record_error(self, exc: BaseException) -> None:
        """Count ``exc`` by its class name. Never raises: the query's own exception must propagate."""
        try:
            typ = type(exc)
            cell = self.errors.get(typ)
            if cell is None:
                cell = self.errors[typ] = errors_total.labels(self.alias, self.vendor, typ.__name__)
            cell.inc()
        except Exception:  # pragma: no cover - defensive: instrumentation never breaks a query
            logger.exception("django_prometheus: could not count a database error")


_cursor_classes: dict[tuple[type, str, str], type] = {}
_cursor_classes_lock = threading.Lock()


def ExportingCursorWrapper(cursor_class: type, alias: str, vendor: str) -> type:
    """A subclass of ``cursor_class`` whose execute/executemany record the (alias, vendor) metrics.

    One class per (cursor_class, alias, vendor), created on first use and reused
    for every cursor after that; its methods hold the cells directly.
    """
    key = (cursor_class, alias, vendor)
    cls = _cursor_classes.get(key)
    if cls is None:
        with _cursor_classes_lock:
            cls = _cursor_classes.get(key)
            if cls is None:
                cls = _cursor_classes[key] = _make_cursor_class(cursor_class, alias, vendor)
    return cls


def _make_cursor_class(cursor_class: type, alias: str, vendor: str) -> type:
    if getattr(cursor_class, "_prometheus_exporting", False):
        raise TypeError(f"{cursor_class!r} is already an exporting cursor class")
    cells = DBCells.for_labels(alias, vendor)
    namespace = {
        "__module__": __name__,
        "__qualname__": f"ExportingCursorWrapper.<{cursor_class.__qualname__}>",
        # No __dict__ of our own: instances keep the layout of cursor_class, so a
        # cursor built by the driver or Django can be switched to this class.
        "__slots__": (),
        "_prometheus_exporting": True,
        "_prometheus_cells": cells,
        "execute": _db.instrument_execute(
            cursor_class.execute, cells.execute, cells.duration, cells.record_error
        ),
    }
    if hasattr(cursor_class, "executemany"):
        namespace["executemany"] = _db.instrument_executemany(
            cursor_class.executemany, cells.execute, cells.many, cells.duration, cells.record_error
        )
    return type(f"Exporting{cursor_class.__name__}", (cursor_class,), namespace)


def export_cursor(cursor: Any, alias: str, vendor: str) -> Any:
    """Switch a cursor that Django or the driver built itself to its exporting class, in place."""
    if not getattr(type(cursor), "_prometheus_exporting", False):
        try:
            cursor.__class__ = ExportingCursorWrapper(type(cursor), alias, vendor)
        except TypeError:  # pragma: no cover - an extension type that can't change class: leave it as is
            logger.debug("django_prometheus: cannot instrument cursor %r", cursor, exc_info=True)
    return cursor


class DatabaseWrapperMixin:
    """Put first in the MRO of a Django ``DatabaseWrapper``.

    Counts new connections and connection failures, and makes cursors of
    ``CURSOR_CLASS`` (through ``ExportingCursorWrapper``) for drivers whose
    ``connection.cursor()`` takes a ``factory`` (sqlite3). Backends of other
    drivers override ``create_cursor`` with the same class.
    """

    #: The driver cursor class that ``create_cursor`` instruments (sqlite3-style ``factory=``).
    CURSOR_CLASS: type | None = None

    alias: str
    vendor: str
    connection: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prometheus_cells = DBCells.for_labels(self.alias, self.vendor)
        # Resolved once per connection object: create_cursor() only passes it on.
        self._prometheus_cursor_class = (
            None if self.CURSOR_CLASS is None else self.prometheus_cursor_class(self.CURSOR_CLASS)
        )

    def get_new_connection(self, *args: Any, **kwargs: Any) -> Any:
        cells = self._prometheus_cells
        cells.connections.inc()
        try:
            return super().get_new_connection(*args, **kwargs)  # type: ignore[misc]
        except BaseException:
            cells.connection_errors.inc()
            raise

    def prometheus_cursor_class(self, cursor_class: type) -> type:
        """``cursor_class`` instrumented with this connection's alias and vendor."""
        return ExportingCursorWrapper(cursor_class, self.alias, self.vendor)

    def create_cursor(self, name: str | None = None) -> Any:
        factory = self._prometheus_cursor_class
        if factory is None:
            return super().create_cursor(name)  # type: ignore[misc]
        return self.connection.cursor(factory=factory)
