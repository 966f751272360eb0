"""prometheus_client metric classes whose values live in the core's cells.

Each class is a real prometheus_client metric (``isinstance(m, MetricWrapperBase)``,
``_name``, ``labels()``, ``inc()``/``observe()``/``set()``, registered in and
unregistrable from a registry), but ``labels()`` returns a core cell instead of
building a child metric object, and ``collect()`` reads the cells. Hot paths
resolve cells once and then only increment them.

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` or ``prometheus_multiproc_dir``
set when this module is imported, the rule prometheus_client's ``values.py``
follows): counter and histogram cells live in this process' files, in
prometheus_client's format, which ``MultiProcessCollector`` sums with every
other process' and with users' own metrics; gauges too, in one file per
``multiprocess_mode``, which means exactly what it means there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import prometheus_client
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started
from prometheus_client import metrics as _pc_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import mmap_key
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from django_prometheus import disabled
from django_prometheus import native as native_settings
from django_prometheus._core import _cells, _native_files
from django_prometheus.conf import multiprocess_dir

__all__ = ["MULTIPROCESS_DIR", "Counter", "Gauge", "Histogram", "multiprocess_store"]

CellFactory = Callable[[tuple[str, ...]], Any]


#: The multiprocess directory, or None in single-process mode; decided once, at import.
MULTIPROCESS_DIR: str | None = multiprocess_dir()

_store: Any = None
_store_lock = threading.Lock()


def _check_pid(**kwargs: Any) -> None:
    _store.check_pid()
    if _native is not None:
        _native.check_pid()


_native: Any = None


def native_files() -> Any:
    """This process' native histogram file (multiprocess mode; created on first use)."""
    global _native
    if _native is None:
        multiprocess_store()  # the directory's checks, and the pid check per request
        with _store_lock:
            if _native is None:
                _native = _native_files.NativeFiles(MULTIPROCESS_DIR)
                # Native parts' files cannot see a fork that skips Python's hooks: once they
                # exist, the pid check runs per request whatever the store can see.
                _watch_requests_for_forks()
    return _native


def multiprocess_store() -> Any:
    """This process' store of multiprocess cells (created on first use)."""
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                if MULTIPROCESS_DIR is None:
                    raise RuntimeError("not in multiprocess mode (PROMETHEUS_MULTIPROC_DIR is not set)")
                _check_multiprocess_dir(MULTIPROCESS_DIR)
                _store = _cells.MultiProcessStore(MULTIPROCESS_DIR)
                if not _store.watches_forks:
                    _watch_requests_for_forks()
    return _store


def _watch_requests_for_forks() -> None:
    # Servers that fork without Python's fork hooks (uWSGI by default): one pid check per
    # request, for files that cannot see such a fork themselves. The compiled store sees
    # every fork (a pthread_atfork flag read at the next write) and needs none.
    request_started.connect(_check_pid, weak=False, dispatch_uid="django_prometheus.check_pid")


def _check_multiprocess_dir(path: str) -> None:
    """Fail at start-up, saying what to fix, rather than with a bare OSError on a first write."""
    variable = (
        "PROMETHEUS_MULTIPROC_DIR" if "PROMETHEUS_MULTIPROC_DIR" in os.environ else "prometheus_multiproc_dir"
    )
    if not path:
        problem = "is set but empty"
    elif not os.path.isdir(path):
        problem = "does not exist" if not os.path.exists(path) else "is not a directory"
    elif not os.access(path, os.W_OK | os.X_OK):
        problem = "is not writable by this process"
    else:
        return
    raise ImproperlyConfigured(
        f"django_prometheus: multiprocess mode is on because the environment variable {variable} is set, "
        f"but the directory it names ({path!r}) {problem}. Create it (empty) before the server starts, "
        f"e.g. `mkdir -p {path or '/tmp/prometheus-multiproc'}`, writable by every worker, "
        f"or unset {variable} to count in this process only."
    )


class _CellBacked:
    """Mixin placed before a prometheus_client metric class: values live in core cells."""

    _family: Any = None  # a core Family, for a labelled metric
    _cell: Any = None  # the one cell of an unlabelled metric
    _labelnames: tuple[str, ...]
    _name: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # PROMETHEUS_DISABLED_METRICS: a listed family is never made (nor registered).
        found = disabled.disabled_family(cls, args, kwargs)
        return found if found is not None else super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if MULTIPROCESS_DIR is not None:
            # A bad directory is the user's error to read: raise it before anything is registered,
            # so a module that fails here can be imported again (Django retries) without
            # a DuplicateTimeseries hiding it.
            multiprocess_store()
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        if self._is_parent():  # type: ignore[attr-defined]
            self._family = _cells.Family(self._cell_factory())

    def _cell_factory(self) -> CellFactory:
        """``factory(label_values) -> cell``."""
        raise NotImplementedError

    def _metric_init(self) -> None:
        # Called by prometheus_client for an unlabelled metric: one cell, no child objects.
        self._cell = self._cell_factory()(())
        self._created = getattr(self._cell, "created", None) or time.time()

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
            self._add_samples(metric, dict(zip(self._labelnames, values, strict=True)), cell, use_created)
        return [metric]

    def _add_samples(self, metric: Metric, labels: dict[str, str], cell: Any, use_created: bool) -> None:
        raise NotImplementedError

    # The exporters' fast path (``text_format.render``): this family hands the writer its
    # cells as they are, and the writer makes the bytes collect() + generate_latest would give.
    _expo_base: type

    def _expo_family(self) -> tuple[Any, ...] | None:
        """``(type, name, help, unit, label names, children, les, with_sum)``; None: use collect().

        ``children``: the core Family itself when labelled (the writer keeps what it prepares
        for its children there, between scrapes), else the one ``((), cell)`` pair or none.
        """
        cls, base = type(self), self._expo_base
        if cls.collect is not base.collect or cls._add_samples is not base._add_samples:
            return None  # a subclass changed what is collected: collect() is the truth
        if self._family is not None:
            children: Any = self._family
        elif self._cell is not None:
            children = [((), self._cell)]
        else:
            children = []
        return (
            self._type, self._name, self._documentation, self._unit, self._labelnames, children,
            self._expo_les(), self._expo_with_sum(),
        )  # fmt: skip

    def _expo_les(self) -> tuple[str, ...]:
        return ()

    def _expo_with_sum(self) -> bool:
        return False


class Counter(_CellBacked, prometheus_client.Counter):
    """A value that only goes up (requests served, errors raised), counted in a core cell.

    Made and used as ``prometheus_client.Counter`` (same arguments, samples and
    registry behaviour); ``labels(...)`` returns the label set's cell, which a hot
    path can keep and ``inc()`` directly.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> orders = Counter("shop_orders", "Orders placed.", ["payment"], registry=registry)
    >>> orders.labels("card").inc()
    >>> orders.labels(payment="card").inc(2)
    >>> registry.get_sample_value("shop_orders_total", {"payment": "card"})
    3.0
    """

    def _cell_factory(self) -> CellFactory:
        if MULTIPROCESS_DIR is None:
            return lambda values: _cells.Counter()
        store, name, labelnames, doc = (
            multiprocess_store(),
            self._name,
            list(self._labelnames),
            self._documentation,
        )
        return lambda values: store.counter(mmap_key(name, name + "_total", labelnames, list(values), doc))

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
    """A value that goes up and down (items in a queue, connections open), kept in a core cell.

    Made and used as ``prometheus_client.Gauge``; ``set_function()`` and, in
    multiprocess mode, every ``multiprocess_mode`` work as they do there.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> waiting = Gauge("shop_orders_waiting", "Orders not shipped yet.", registry=registry)
    >>> waiting.set(5)
    >>> waiting.dec()
    >>> registry.get_sample_value("shop_orders_waiting")
    4.0
    """

    def _cell_factory(self) -> CellFactory:
        if MULTIPROCESS_DIR is None:
            return lambda values: _cells.Gauge()
        # In this process' file of its multiprocess_mode, with the space reserved as for
        # counters, and live* modes in files a scrape drops once their process is gone.
        store, name, labelnames, doc, mode = (
            multiprocess_store(),
            self._name,
            list(self._labelnames),
            self._documentation,
            self._multiprocess_mode,
        )
        return lambda values: store.gauge(mmap_key(name, name, labelnames, list(values), doc), mode)

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

    def _expo_family(self) -> tuple[Any, ...] | None:
        if "_child_samples" in self.__dict__:
            return None
        return super()._expo_family()

    def _add_samples(self, metric: Metric, labels: dict[str, str], cell: Any, use_created: bool) -> None:
        metric.add_sample(self._name, labels, cell.get())


class Histogram(_CellBacked, prometheus_client.Histogram):
    """Observations (durations, sizes) counted into buckets, with their count and sum, in a core cell.

    ``native=True`` (default: ``PROMETHEUS_NATIVE_HISTOGRAMS``) gives every child a
    native histogram next to its classic buckets, shown by the protobuf exposition;
    ``native_bucket_factor``, ``native_zero_threshold`` and ``native_max_buckets``
    default to the native histogram settings (``django_prometheus.native``). In multiprocess
    mode the native parts go to files of their own, merged by the scrape.

    Made and used as ``prometheus_client.Histogram`` (``buckets=`` as there;
    ``+Inf`` is added); ``observe()`` takes an exemplar, and
    ``set_exemplar_capture()`` marks every observation's bucket with one.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> checkout = Histogram("shop_checkout_seconds", "Checkout time.", buckets=(0.1, 1.0), registry=registry)
    >>> checkout.observe(0.25)
    >>> checkout.observe(3.0)
    >>> registry.get_sample_value("shop_checkout_seconds_bucket", {"le": "1.0"})
    1.0
    >>> registry.get_sample_value("shop_checkout_seconds_count")
    2.0
    """

    #: ``capture()`` -> exemplar labels or None, given to every cell (``set_exemplar_capture``).
    _exemplar_capture: Callable[[], dict[str, str] | None] | None = None
    #: None, or what every child's native part is made from.
    _native_config: native_settings.NativeConfig | None = None

    def __init__(
        self,
        *args: Any,
        native: bool | None = None,
        native_bucket_factor: float | None = None,
        native_zero_threshold: float | None = None,
        native_max_buckets: int | None = None,
        **kwargs: Any,
    ) -> None:
        if native is None:
            native = native_settings.enabled()
        if native:
            self._native_config = native_settings.configure(
                native_bucket_factor, native_zero_threshold, native_max_buckets
            )
        super().__init__(*args, **kwargs)

    def _cell_factory(self) -> CellFactory:
        bounds = tuple(self._upper_bounds)
        if MULTIPROCESS_DIR is None:
            native = self._native_config

            def cell(values: tuple[str, ...]) -> Any:
                c = _cells.Histogram(bounds)
                if native is not None:
                    c.set_native(native.new())
                capture = self._exemplar_capture
                if capture is not None:  # a child created after set_exemplar_capture()
                    c.set_exemplar_capture(capture)
                return c

            return cell
        store, name, doc = multiprocess_store(), self._name, self._documentation
        labelnames = list(self._labelnames)
        bucket_labelnames = [*labelnames, "le"]
        les = [floatToGoString(b) for b in bounds]
        native_config = self._native_config
        files = native_files() if native_config is not None else None

        def factory(values: tuple[str, ...]) -> Any:
            bucket_keys = [
                mmap_key(name, name + "_bucket", bucket_labelnames, [*values, le], doc) for le in les
            ]
            cell = store.histogram(
                bounds, bucket_keys, mmap_key(name, name + "_sum", labelnames, list(values), doc)
            )
            if native_config is not None:  # its own file kind: see _core/_native_files.py
                part = native_config.new()
                part.attach(files, _native_files.child_prefix(name, labelnames, values))
                cell.set_native(part)
            return cell

        return factory

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """Observe ``amount``; ``exemplar`` labels (at most 128 runes) mark its bucket."""
        self._the_cell().observe(amount, exemplar)

    def set_exemplar_capture(self, capture: Callable[[], dict[str, str] | None] | None) -> None:
        """Call ``capture()`` on every observation, and keep what it returns as the bucket's exemplar.

        For every child, present and future; None stops (and forgets the exemplars).
        Single-process only: multiprocess files carry no exemplars (prometheus_client's neither).
        """
        self._exemplar_capture = capture
        cells = [cell for _, cell in self._family.children()] if self._family is not None else [self._cell]
        for cell in cells:
            if cell is not None:
                cell.set_exemplar_capture(capture)

    def _add_samples(self, metric: Metric, labels: dict[str, str], cell: Any, use_created: bool) -> None:
        name = self._name
        acc = 0.0
        exemplars = cell.exemplars() or ()
        for i, (bound, acc) in enumerate(zip(cell.bounds, cell.buckets(), strict=True)):
            ex = exemplars[i] if exemplars else None
            metric.add_sample(
                name + "_bucket",
                {**labels, "le": floatToGoString(bound)},
                acc,
                exemplar=None if ex is None else Exemplar(dict(ex[0]), ex[1], ex[2]),
            )
        metric.add_sample(name + "_count", labels, acc)
        if cell.bounds[0] >= 0:
            metric.add_sample(name + "_sum", labels, cell.sum)
        if use_created:
            metric.add_sample(name + "_created", labels, cell.created)

    def _expo_les(self) -> tuple[str, ...]:
        les = self.__dict__.get("_les")
        if les is None:
            les = self.__dict__["_les"] = tuple(floatToGoString(b) for b in self._upper_bounds)
        return les

    def _expo_with_sum(self) -> bool:
        return self._upper_bounds[0] >= 0


Counter._expo_base = Counter
Gauge._expo_base = Gauge
Histogram._expo_base = Histogram
