"""``PROMETHEUS_DISABLED_METRICS``: families that are never registered, exposed or recorded.

Every family of ours is made by the facades of ``django_prometheus.metrics``
(upstream's HTTP, DB, cache, model and migration families, and the opt-in
ones); their ``__new__`` asks ``disabled_family`` first and, for a listed name,
returns a ``DisabledMetric`` instead: not in any registry, nothing in /metrics,
nothing in multiprocess files. Its ``labels()`` and ``inc()``/``observe()``/
``set()`` accept what the family's would and count into one detached cell
(the cache and DB cores bind real cells), and the HTTP recorders get the core's
``NO_CELL`` for it, which they skip.

Names are as exposed: the namespace included, a counter with its ``_total``
(its declared name without ``_total`` is accepted too). A name that matches no
family is reported by ``manage.py check`` (``django_prometheus.W205``).
"""

from __future__ import annotations

from typing import Any

from django_prometheus.http import options

__all__ = [
    "LAZY_FAMILIES",
    "DisabledMetric",
    "disabled_family",
    "is_disabled",
    "listed",
]

#: Families made on first use (opt-in features), by exposed name without the namespace: known
#: to the check before they exist.
LAZY_FAMILIES = (
    "django_http_route_requests_total",
    "django_http_route_request_duration_seconds",
    "django_http_requests_in_progress",
    "django_http_request_queue_seconds",
    "django_http_request_db_queries",
    "django_http_request_db_seconds",
    "django_http_request_db_repeated_queries_total",
    "django_model_rows_total",
    "django_db_pool_connections",
    "django_db_pool_size",
    "django_db_pool_requests_total",
    "django_db_pool_wait_seconds_total",
    "django_db_pool_timeouts_total",
    "django_db_pool_connections_lost_total",
)

# Every exposed name a facade was asked to make, disabled or not (the check's other source).
_seen: set[str] = set()


def _exposed_names(kind: str, name: str, namespace: str, subsystem: str, unit: str) -> tuple[str, ...]:
    # prometheus_client's naming: parts joined by "_", the unit appended, a counter's "_total" off.
    full = "_".join(part for part in (namespace, subsystem, name) if part)
    if unit and not full.endswith("_" + unit):
        full += "_" + unit
    if kind == "counter":
        base = full.removesuffix("_total")
        return (base + "_total", base)
    return (full,)


def _kind(cls: type) -> str:
    import prometheus_client

    if issubclass(cls, prometheus_client.Counter):
        return "counter"
    if issubclass(cls, prometheus_client.Histogram):
        return "histogram"
    return "gauge"


def is_disabled(name: str) -> bool:
    """Whether the family exposed as ``name`` is listed (collectors that make families at scrape ask this)."""
    return name in options.disabled_metrics()


def listed(cls: type, name: str, namespace: str = "") -> bool:
    """Whether the family ``cls(name, namespace=namespace)`` would make is disabled now."""
    wanted = options.disabled_metrics()
    return bool(wanted) and any(n in wanted for n in _exposed_names(_kind(cls), name, namespace, "", ""))


def disabled_family(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DisabledMetric | None:
    """A ``DisabledMetric`` for the family ``cls(*args, **kwargs)`` would make, if it is disabled."""
    if kwargs.get("_labelvalues") is not None:
        return None  # a child of a family, never a family
    names = ("name", "documentation", "labelnames", "namespace", "subsystem", "unit")
    given = dict(zip(names, args, strict=False))
    given.update((k, v) for k, v in kwargs.items() if k in names)
    name = given.get("name")
    if not isinstance(name, str):
        return None  # prometheus_client's own error follows
    kind = _kind(cls)
    exposed = _exposed_names(
        kind, name, given.get("namespace") or "", given.get("subsystem") or "", given.get("unit") or ""
    )
    _seen.add(exposed[0])
    wanted = options.disabled_metrics()
    if not wanted or not any(n in wanted for n in exposed):
        return None
    return DisabledMetric(cls, kind, exposed[0], given, kwargs)


class DisabledMetric:
    """What a disabled family's facade returns: the family's surface, no registration, no values."""

    def __init__(
        self, cls: type, kind: str, exposed: str, given: dict[str, Any], kwargs: dict[str, Any]
    ) -> None:
        from django_prometheus._core import _cells

        self._type = kind
        self._exposed = exposed
        self._name = exposed.removesuffix("_total") if kind == "counter" else exposed
        self._documentation = given.get("documentation", "")
        self._labelnames = tuple(given.get("labelnames") or ())
        self._unit = given.get("unit") or ""
        if kind == "histogram":
            buckets = kwargs.get("buckets", cls.DEFAULT_BUCKETS)  # type: ignore[attr-defined]
            bounds = [float(b) for b in buckets]
            if bounds[-1] != float("inf"):
                bounds.append(float("inf"))
            self._upper_bounds = bounds
            self._cell = _cells.Histogram(tuple(bounds))
        elif kind == "counter":
            self._cell = _cells.Counter()
        else:
            self._cell = _cells.Gauge()

    def __repr__(self) -> str:
        return f"<DisabledMetric {self._exposed} (PROMETHEUS_DISABLED_METRICS)>"

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any:
        return self._cell

    def inc(self, amount: float = 1, exemplar: Any = None) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float, exemplar: Any = None) -> None:
        pass

    def set_exemplar_capture(self, capture: Any) -> None:
        pass

    def remove(self, *labelvalues: Any) -> None:
        pass

    def clear(self) -> None:
        pass

    def collect(self) -> list[Any]:
        return []

    def describe(self) -> list[Any]:
        return []
