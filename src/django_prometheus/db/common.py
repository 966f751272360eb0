"""What every instrumented database path shares: cells per (alias, vendor), cursor wrapper classes, the mixin.

Both paths count at Django's cursor-wrapper level, never in the driver: the
ENGINE path (``DatabaseWrapperMixin``) makes Django's ``CursorWrapper`` of
each cursor an exporting subclass, and the no-swap path (``db.instrument``)
puts one execute wrapper in ``connection.execute_wrappers``. The driver's own
cursor classes (``cursor_factory`` and the like) stay exactly what Django and
the user configured.
"""

from __future__ import annotations

import logging
import threading
from time import perf_counter
from types import TracebackType
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.utils import Error as DjangoDatabaseError

from django_prometheus._core import _db
from django_prometheus.db.metrics import (
    connection_errors_total,
    connections_total,
    errors_total,
    execute_many_total,
    execute_total,
    query_duration_seconds,
    transaction_duration_seconds,
    transactions_total,
)

__all__ = [
    "DBCells",
    "DatabaseWrapperMixin",
    "ExceptionCounterByType",
    "ExportingCursorWrapper",
    "SQLiteTransactionMixin",
]

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
        "__weakref__",
        "alias",
        "commits",
        "connection_errors",
        "connections",
        "duration",
        "errors",
        "execute",
        "execute_wrapper",
        "many",
        "rollbacks",
        "transaction_duration",
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
        self.commits = transactions_total.labels(alias, vendor, "commit")
        self.rollbacks = transactions_total.labels(alias, vendor, "rollback")
        self.transaction_duration = transaction_duration_seconds.labels(alias, vendor)
        # Exception class -> cell; filled on the (cold) error path.
        self.errors: dict[type, Any] = {}
        #: The one ``connection.execute_wrappers`` entry of this (alias, vendor), for the no-swap path.
        self.execute_wrapper = _db.instrument_wrapper(
            self.execute, self.many, self.duration, self.record_error
        )

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
        """Count ``exc`` by its driver's class name. Never raises: the query's exception must propagate."""
        try:
            typ = type(exc)
            # Django re-raises a driver error as its own class ``from`` the driver's:
            # the label stays the driver's class name, as when counting in the driver.
            if isinstance(exc, DjangoDatabaseError) and exc.__cause__ is not None:
                typ = type(exc.__cause__)
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

    ``cursor_class`` is a cursor wrapper of Django's (``CursorWrapper``,
    ``CursorDebugWrapper`` or a backend's own) or any class with DB-API
    ``execute``/``executemany``. One class per (cursor_class, alias, vendor),
    created on first use and reused for every cursor after that; its methods
    hold the cells directly.

    A ``cursor_class`` that already exports (made here, for any alias and
    vendor, or a subclass of one) is returned as it is: a second layer would
    count every query twice (upstream wraps again, and its deeper MRO was
    upstream's #445). Custom backends may call this on classes they did not create.
    """
    if getattr(cursor_class, "_prometheus_exporting", False):
        return cursor_class
    key = (cursor_class, alias, vendor)
    cls = _cursor_classes.get(key)
    if cls is None:
        with _cursor_classes_lock:
            cls = _cursor_classes.get(key)
            if cls is None:
                cls = _cursor_classes[key] = _make_cursor_class(cursor_class, alias, vendor)
    return cls


def _make_cursor_class(cursor_class: type, alias: str, vendor: str) -> type:
    cells = DBCells.for_labels(alias, vendor)
    namespace = {
        "__module__": __name__,
        "__qualname__": f"ExportingCursorWrapper.<{cursor_class.__qualname__}>",
        # No __dict__ of our own: instances keep the layout of cursor_class, so a
        # wrapper built by Django or a backend can be switched to this class.
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


def account_transaction_control(connection: Any) -> None:
    """Make ``connection``'s BEGIN/COMMIT/ROLLBACK count as queries of the request being accounted.

    For the no-swap path (the ENGINE path does it in ``DatabaseWrapperMixin``): the
    instance's ``_set_autocommit``/``_commit``/``_rollback`` are wrapped where Django's
    ``debug_transaction`` logs them, once per connection object; the class stays Django's.
    """
    if _ours(connection, "_commit"):
        return
    real_set = connection._set_autocommit

    def _set_autocommit(autocommit: bool) -> Any:
        if autocommit:
            return real_set(autocommit)
        t0 = perf_counter()
        try:
            return real_set(autocommit)
        finally:
            _db.account_statement("BEGIN", perf_counter() - t0)

    def ending(real: Any, sql: str) -> Any:
        def end() -> Any:
            if connection.connection is None:
                return real()
            t0 = perf_counter()
            try:
                return real()
            finally:
                _db.account_statement(sql, perf_counter() - t0)

        return end

    wrapped = {
        "_set_autocommit": _set_autocommit,
        "_commit": ending(connection._commit, "COMMIT"),
        "_rollback": ending(connection._rollback, "ROLLBACK"),
    }
    for name, method in wrapped.items():
        method._prometheus_tx = True  # type: ignore[attr-defined]
        setattr(connection, name, method)


def _ours(connection: Any, name: str) -> bool:
    return getattr(connection.__dict__.get(name), "_prometheus_tx", False)


def remove_transaction_control(connection: Any) -> None:
    """Undo ``account_transaction_control``."""
    for name in ("_set_autocommit", "_commit", "_rollback"):
        if _ours(connection, name):
            del connection.__dict__[name]


class DatabaseWrapperMixin:
    """Put first in the MRO of a Django ``DatabaseWrapper``.

    Counts new connections and connection failures, transactions, and makes
    the cursor wrappers Django hands out (``make_cursor``/``make_debug_cursor``)
    exporting ones. The driver's cursors are untouched, so every vendor takes
    the same path and pooled connections need nothing per checkout.
    """

    alias: str
    vendor: str
    connection: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prometheus_cells = DBCells.for_labels(self.alias, self.vendor)
        # Django's class -> its exporting subclass, for wrappers a backend builds itself.
        self._prometheus_wrapper_classes: dict[type, type] = {}
        # Django's own make_cursor builds CursorWrapper(cursor, self): build ours directly then.
        plain = getattr(super().make_cursor, "__func__", None) is BaseDatabaseWrapper.make_cursor  # type: ignore[misc]
        self._prometheus_cursor_wrapper = (
            ExportingCursorWrapper(CursorWrapper, self.alias, self.vendor) if plain else None
        )
        #: perf_counter() when the open transaction began, 0.0 when none is open.
        self._prometheus_transaction_start = 0.0

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

    def _prometheus_export(self, wrapper: Any) -> Any:
        cls = self._prometheus_wrapper_classes.get(wrapper.__class__)
        try:
            if cls is None:
                if getattr(wrapper.__class__, "_prometheus_exporting", False):
                    return wrapper
                cls = self.prometheus_cursor_class(wrapper.__class__)
                self._prometheus_wrapper_classes[wrapper.__class__] = cls
            wrapper.__class__ = cls
        except TypeError:  # pragma: no cover - a wrapper class that cannot be subclassed or switched
            logger.debug("django_prometheus: cannot instrument cursor wrapper %r", wrapper, exc_info=True)
        return wrapper

    def make_cursor(self, cursor: Any) -> Any:
        cls = self._prometheus_cursor_wrapper
        if cls is not None:
            return cls(cursor, self)
        return self._prometheus_export(super().make_cursor(cursor))  # type: ignore[misc]

    def make_debug_cursor(self, cursor: Any) -> Any:
        return self._prometheus_export(super().make_debug_cursor(cursor))  # type: ignore[misc]

    # Transactions: begin when autocommit goes off (atomic()'s outermost block,
    # set_autocommit(False)), end at the commit or rollback that reaches the driver.
    # The BEGIN, COMMIT and ROLLBACK Django logs for them (``debug_transaction``) also
    # count as queries of the request being accounted, as assertNumQueries counts them.

    def _set_autocommit(self, autocommit: bool) -> Any:
        if autocommit:
            result = super()._set_autocommit(autocommit)  # type: ignore[misc]
            self._prometheus_transaction_start = 0.0
            return result
        t0 = perf_counter()
        try:
            result = super()._set_autocommit(autocommit)  # type: ignore[misc]
        finally:
            now = perf_counter()
            _db.account_statement("BEGIN", now - t0)
        self._prometheus_transaction_start = now
        return result

    def _commit(self) -> Any:
        start = self._prometheus_transaction_start
        if self.connection is None:  # Django sends (and logs) nothing then
            return super()._commit()  # type: ignore[misc]
        t0 = perf_counter()
        try:
            result = super()._commit()  # type: ignore[misc]
        finally:
            _db.account_statement("COMMIT", perf_counter() - t0)
        if start and self.connection is not None:
            self._prometheus_end_transaction(start, self._prometheus_cells.commits)
        return result

    def _rollback(self) -> Any:
        start = self._prometheus_transaction_start
        if self.connection is None:
            return super()._rollback()  # type: ignore[misc]
        t0 = perf_counter()
        try:
            result = super()._rollback()  # type: ignore[misc]
        finally:
            _db.account_statement("ROLLBACK", perf_counter() - t0)
        if start and self.connection is not None:
            self._prometheus_end_transaction(start, self._prometheus_cells.rollbacks)
        return result

    def _prometheus_end_transaction(self, start: float, outcome: Any) -> None:
        now = perf_counter()
        outcome.inc()
        self._prometheus_cells.transaction_duration.observe(now - start)
        # Outside autocommit, the next transaction begins right away.
        self._prometheus_transaction_start = now


class SQLiteTransactionMixin:
    """SQLite begins atomic() blocks with ``BEGIN`` under autocommit, not by turning autocommit off."""

    def _start_transaction_under_autocommit(self) -> Any:
        result = super()._start_transaction_under_autocommit()  # type: ignore[misc]
        self._prometheus_transaction_start = perf_counter()
        return result
