"""Model operation counters and the mixin that feeds them."""

from __future__ import annotations

from typing import Any

from django_prometheus.conf import NAMESPACE
from django_prometheus.metrics import Counter

__all__ = ["ExportModelOperationsMixin", "model_deletes", "model_inserts", "model_updates"]

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
