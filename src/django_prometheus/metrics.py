"""prometheus_client metric classes whose values live in the core's cells.

Each class is a real prometheus_client metric (``isinstance(m, MetricWrapperBase)``,
``_name``, ``labels()``, ``inc()``/``observe()``/``set()``, registered in and
unregistrable from a registry), but ``labels()`` returns a core cell instead of
building a child metric object, and ``collect()`` reads the cells. Hot paths
resolve cells once and then only increment them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from prometheus_client import metrics as _pc_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from django_prometheus._core import _cells

__all__ = ["Counter", "Gauge", "Histogram"]


class _CellBacked:
    """Mixin placed before a prometheus_client metric class: values live in core cells."""

    _family: Any = None  # a core Family, for a labelled metric
    _cell: Any = None  # the one cell of an unlabelled metric
    _labelnames: tuple[str, ...]
    _name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        if self._is_parent():  # type: ignore[attr-defined]
            self._family = _cells.Family(self._cell_factory())

    def _cell_factory(self) -> Callable[[], Any]:
        raise NotImplementedError

    def _metric_init(self) -> None:
        # Called by prometheus_client for an unlabelled metric: one cell, no child objects.
        self._cell = self._cell_factory()()
        self._created = self._cell.created

    # prometheus_client keeps children in ``_metrics``; ours are cells in the family.
    @property
    def _metrics(self) -> dict[tuple[str, ...], Any]:
        return dict(self._family.children()) if self._family is not None else {}

    @_metrics.setter
    def _metrics(self, value: dict) -> None:
        pass

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any:
        family = self._family
        if family is None:
            return super().labels(*labelvalues, **labelkwargs)  # type: ignore[misc]  # raises the usual error
        if labelvalues and labelkwargs:
            raise ValueError("Can't pass both *args and **kwargs")
        if labelkwargs:
            if sorted(labelkwargs) != sorted(self._labelnames):
                raise ValueError("Incorrect label names")
            values = tuple(str(labelkwargs[name]) for name in self._labelnames)
        else:
            if len(labelvalues) != len(self._labelnames):
                raise ValueError("Incorrect label count")
            values = tuple(str(v) for v in labelvalues)
        return family.get(values)

    def remove(self, *labelvalues: Any) -> None:
        if self._family is None:
            raise ValueError(f"No label names were set when constructing {self}")
        if len(labelvalues) != len(self._labelnames):
            raise ValueError(f"Incorrect label count (expected {len(self._labelnames)}, got {labelvalues})")
        self._family.remove(tuple(str(v) for v in labelvalues))

    def clear(self) -> None:
        if self._family is not None:
            self._family.clear()

    def _the_cell(self) -> Any:
        cell = self._cell
        if cell is None:
            self._raise_if_not_observable()  # type: ignore[attr-defined]
        return cell

    def collect(self) -> list[Metric]:
        metric = self._get_metric()  # type: ignore[attr-defined]
        if self._family is not None:
            children: Iterable[tuple[tuple[str, ...], Any]] = self._family.children()
        elif self._cell is not None:
            children = [((), self._cell)]
        else:  # a scrape between registration and the end of __init__
            children = []
        use_created = _pc_metrics._use_created
        for values, cell in children:
            self._add_samples(metric, dict(zip(self._labelnames, values)), cell, use_created)
        return [metric]

    def _add_samples(self, metric: Metric, labels: dict[str, str], cell: Any, use_created: bool) -> None:
        raise NotImplementedError


class Counter(_CellBacked, prometheus_client.Counter):
    def _cell_factory(self) -> Callable[[], Any]:
        return _cells.Counter

    def _metric_init(self) -> None:
        super()._metric_init()
        self._value = self._cell

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        self._the_cell().inc(amount)

    def _add_samples(self, metric: Metric, labels: dict[str, str], cell: Any, use_created: bool) -> None:
        metric.add_sample(self._name + "_total", labels, cell.get())
        if use_created:
            metric.add_sample(self._name + "_created", labels, cell.created)


class Gauge(_CellBacked, prometheus_client.Gauge):
    def _cell_factory(self) -> Callable[[], Any]:
        return _cells.Gauge

    def _metric_init(self) -> None:
        super()._metric_init()
        self._value = self._cell

    def inc(self, amount: float = 1) -> None:
        self._the_cell().inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._the_cell().dec(amount)

    def set(self, value: float) -> None:
        self._the_cell().set(value)

    def collect(self) -> list[Metric]:
        if "_child_samples" in self.__dict__:  # set_function() replaced the value source
            return super(_CellBacked, self).collect()
        return super().collect()

    def _add_samples(self, metric: Metric, labels: dict[str, str], cell: Any, use_created: bool) -> None:
        metric.add_sample(self._name, labels, cell.get())


class Histogram(_CellBacked, prometheus_client.Histogram):
    def _cell_factory(self) -> Callable[[], Any]:
        return functools.partial(_cells.Histogram, tuple(self._upper_bounds))

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        self._the_cell().observe(amount)

    def _add_samples(self, metric: Metric, labels: dict[str, str], cell: Any, use_created: bool) -> None:
        name = self._name
        acc = 0.0
        for bound, acc in zip(cell.bounds, cell.buckets()):
            metric.add_sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, acc)
        metric.add_sample(name + "_count", labels, acc)
        if cell.bounds[0] >= 0:
            metric.add_sample(name + "_sum", labels, cell.sum)
        if use_created:
            metric.add_sample(name + "_created", labels, cell.created)
