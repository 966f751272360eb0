"""Model operation counters and the mixin that feeds them; rows written by bulk and queryset operations."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

from django.db import models

from django_prometheus.conf import NAMESPACE
from django_prometheus.metrics import Counter

__all__ = [
    "ExportModelOperationsMixin",
    "ExportModelRowsQuerySet",
    "ExportModelRowsQuerySetMixin",
    "model_deletes",
    "model_inserts",
    "model_rows",
    "model_updates",
]

model_inserts = Counter(
    "django_model_inserts", "Number of insert operations by model.", ["model"], namespace=NAMESPACE
)
model_updates = Counter(
    "django_model_updates", "Number of update operations by model.", ["model"], namespace=NAMESPACE
)
model_deletes = Counter(
    "django_model_deletes", "Number of delete operations by model.", ["model"], namespace=NAMESPACE
)


def ExportModelOperationsMixin(model_name: str) -> type:
    """A mixin for a model class counting its inserts, updates and deletes under ``model=model_name``.

    ``class Dog(ExportModelOperationsMixin("dog"), models.Model)``. The class'
    ``__qualname__`` is ``ExportModelOperationsMixin('dog')``, which is what
    makemigrations writes into ``bases``: migrations written for django-prometheus
    keep loading. The mixin adds no field, so adding it needs no migration.
    """
    # Resolved once, here: a save() only increments.
    inserts = model_inserts.labels(model_name)
    updates = model_updates.labels(model_name)
    deletes = model_deletes.labels(model_name)

    class Mixin:
        def _do_insert(self, *args: Any, **kwargs: Any) -> Any:
            inserts.inc()
            return super()._do_insert(*args, **kwargs)  # type: ignore[misc]

        def _do_update(self, *args: Any, **kwargs: Any) -> Any:
            updates.inc()
            return super()._do_update(*args, **kwargs)  # type: ignore[misc]

        def delete(self, *args: Any, **kwargs: Any) -> Any:
            deletes.inc()
            return super().delete(*args, **kwargs)  # type: ignore[misc]

    Mixin.__qualname__ = f"ExportModelOperationsMixin('{model_name}')"
    return Mixin


# Rows per model written by bulk_create, bulk_update, QuerySet.update() and
# QuerySet.delete() (cascades included): opt in per model with the queryset below.
# The family is made on first use, so it is not even declared for projects that
# never opt in.
# Held in a dict, not a module global: the family is not one of the metric objects declared here.
_rows_family: dict[str, Any] = {}
_rows_cells: dict[str, dict[str, Any]] = {}
_rows_lock = threading.Lock()

ROW_OPERATIONS = ("bulk_create", "bulk_update", "update", "delete")

# bulk_update() runs its batches through update(): those rows are bulk_update's.
_in_bulk_update: ContextVar[bool] = ContextVar("django_prometheus_in_bulk_update", default=False)


def model_rows() -> Any:
    """The ``django_model_rows_total{model,operation}`` counter (created on first call)."""
    family = _rows_family.get("rows")
    if family is None:
        with _rows_lock:
            family = _rows_family.get("rows")
            if family is None:
                family = _rows_family["rows"] = Counter(
                    "django_model_rows",
                    "Number of rows written by bulk and queryset operations, by model and operation.",
                    ["model", "operation"],
                    namespace=NAMESPACE,
                )
    return family


def _row_cells(label: str) -> dict[str, Any]:
    # One dict of cells per model label, resolved once: an operation only increments.
    cells = _rows_cells.get(label)
    if cells is None:
        family = model_rows()
        with _rows_lock:
            cells = _rows_cells.get(label)
            if cells is None:
                cells = _rows_cells[label] = {op: family.labels(label, op) for op in ROW_OPERATIONS}
    return cells


class ExportModelRowsQuerySetMixin:
    """Mix into a model's QuerySet to count the rows its bulk and queryset writes touch.

    ``objects = ExportModelRowsQuerySet.as_manager()``, or
    ``class MyQuerySet(ExportModelRowsQuerySetMixin, models.QuerySet)``. Counts
    ``django_model_rows_total{model="<app_label>.<Model>", operation=...}``:
    ``bulk_create`` the objects created, ``bulk_update`` and ``update`` the rows
    matched (what Django returns), ``delete`` the rows deleted per model,
    cascaded ones under their own model. The async twins (``abulk_create``, …)
    run these. ``save()``/instance ``delete()`` stay ExportModelOperationsMixin's.
    """

    model: Any

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        created = super().bulk_create(objs, *args, **kwargs)  # type: ignore[misc]
        _row_cells(self.model._meta.label)["bulk_create"].inc(len(created))
        return created

    def bulk_update(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        token = _in_bulk_update.set(True)
        try:
            rows = super().bulk_update(objs, *args, **kwargs)  # type: ignore[misc]
        finally:
            _in_bulk_update.reset(token)
        _row_cells(self.model._meta.label)["bulk_update"].inc(rows or 0)
        return rows

    def update(self, **kwargs: Any) -> Any:
        rows = super().update(**kwargs)  # type: ignore[misc]
        if not _in_bulk_update.get():
            _row_cells(self.model._meta.label)["update"].inc(rows or 0)
        return rows

    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> Any:
        result = super().delete()  # type: ignore[misc]
        # (total, {model label: rows}), the cascade included: Django's own account.
        for label, rows in result[1].items():
            if rows:
                _row_cells(label)["delete"].inc(rows)
        return result

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class ExportModelRowsQuerySet(ExportModelRowsQuerySetMixin, models.QuerySet):
    """A QuerySet counting ``django_model_rows_total``: ``objects = ExportModelRowsQuerySet.as_manager()``."""
