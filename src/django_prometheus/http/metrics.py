"""The HTTP metric families: one spec each (upstream's names, labels and order) and ``Metrics``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from prometheus_client import REGISTRY

from django_prometheus import conf
from django_prometheus.http import exemplars, options
from django_prometheus.metrics import Counter, Histogram
from django_prometheus.utils import PowersOf

__all__ = ["BEFORE", "BODY", "LATENCY", "SPECS", "Metrics", "Spec", "has_default_labels", "rules"]

#: ``record(metric, request, response)``: records one response into ``metric`` (the family).
Rule = Callable[[Any, Any, Any], None]


class Spec(NamedTuple):
    """One HTTP family: its class, declared name, documentation, label names and, if new, its rule.

    ``record`` is how a family beyond upstream's is recorded: called with the
    family, the request and the response once per response, by
    ``PrometheusAfterMiddleware`` on every path (both core twins, sync and async,
    and the hook-by-hook path); a rule that raises is logged and the request goes
    on. Upstream's 19 leave it None: their rules are written once in the core's
    recorders, for speed.
    """

    cls: type
    name: str
    documentation: str
    labelnames: tuple[str, ...]
    record: Rule | None = None


# ``Metrics`` attribute -> spec. Adding a family: a spec here with its ``record`` rule; that is
# all (``tests/test_http_rules.py``). A family that must cost next to nothing per request can
# instead get a hand-written rule in the recorders (``_core/_http_c.pyx`` and ``_http_py.py``,
# tested side by side) and in the middleware's hook path, as upstream's have.
SPECS: dict[str, Spec] = {
    "requests_total": Spec(
        Counter,
        "django_http_requests_before_middlewares_total",
        "Total count of requests before middlewares run.",
        (),
    ),
    "responses_total": Spec(
        Counter,
        "django_http_responses_before_middlewares_total",
        "Total count of responses before middlewares run.",
        (),
    ),
    "requests_latency_before": Spec(
        Histogram,
        "django_http_requests_latency_including_middlewares_seconds",
        "Histogram of requests processing time (including middleware processing time).",
        (),
    ),
    "requests_unknown_latency_before": Spec(
        Counter,
        "django_http_requests_unknown_latency_including_middlewares_total",
        "Count of requests for which the latency was unknown (when computing "
        "django_http_requests_latency_including_middlewares_seconds).",
        (),
    ),
    "requests_latency_by_view_method": Spec(
        Histogram,
        "django_http_requests_latency_seconds_by_view_method",
        "Histogram of request processing time labelled by view.",
        ("view", "method"),
    ),
    "requests_unknown_latency": Spec(
        Counter,
        "django_http_requests_unknown_latency_total",
        "Count of requests for which the latency was unknown.",
        (),
    ),
    "requests_ajax": Spec(Counter, "django_http_ajax_requests_total", "Count of AJAX requests.", ()),
    "requests_by_method": Spec(
        Counter, "django_http_requests_total_by_method", "Count of requests by method.", ("method",)
    ),
    "requests_by_transport": Spec(
        Counter, "django_http_requests_total_by_transport", "Count of requests by transport.", ("transport",)
    ),
    "requests_by_view_transport_method": Spec(
        Counter,
        "django_http_requests_total_by_view_transport_method",
        "Count of requests by view, transport, method.",
        ("view", "transport", "method"),
    ),
    "requests_body_bytes": Spec(
        Histogram, "django_http_requests_body_total_bytes", "Histogram of requests by body size.", ()
    ),
    "responses_by_templatename": Spec(
        Counter,
        "django_http_responses_total_by_templatename",
        "Count of responses by template name.",
        ("templatename",),
    ),
    "responses_by_status": Spec(
        Counter, "django_http_responses_total_by_status", "Count of responses by status.", ("status",)
    ),
    "responses_by_status_view_method": Spec(
        Counter,
        "django_http_responses_total_by_status_view_method",
        "Count of responses by status, view, method.",
        ("status", "view", "method"),
    ),
    "responses_body_bytes": Spec(
        Histogram, "django_http_responses_body_total_bytes", "Histogram of responses by body size.", ()
    ),
    "responses_by_charset": Spec(
        Counter, "django_http_responses_total_by_charset", "Count of responses by charset.", ("charset",)
    ),
    "responses_streaming": Spec(
        Counter, "django_http_responses_streaming_total", "Count of streaming responses.", ()
    ),
    "exceptions_by_type": Spec(
        Counter, "django_http_exceptions_total_by_type", "Count of exceptions by object type.", ("type",)
    ),
    "exceptions_by_view": Spec(
        Counter, "django_http_exceptions_total_by_view", "Count of exceptions by view.", ("view",)
    ),
}
#: Histograms bucketed by ``PROMETHEUS_LATENCY_BUCKETS``, and by ``PROMETHEUS_TOTAL_BYTES_BUCKETS``.
LATENCY = ("requests_latency_before", "requests_latency_by_view_method")
BODY = ("requests_body_bytes", "responses_body_bytes")
#: What ``PrometheusBeforeMiddleware`` records; ``PrometheusAfterMiddleware`` records the rest.
BEFORE = ("requests_total", "responses_total", "requests_latency_before", "requests_unknown_latency_before")


# Re-entrant: a subclass' __init__ may itself ask for an instance.
_INSTANCE_LOCK = threading.RLock()


class Metrics:
    """The HTTP metric families, one attribute each; one shared instance per class (``get_instance()``).

    Subclass it and override ``register_metric`` to add label names, then set
    ``metrics_cls`` on subclassed middlewares whose ``label_metric`` supplies the
    values (upstream's extension point).
    """

    _instance: Metrics | None = None

    @classmethod
    def get_instance(cls) -> Metrics:
        """This class' one instance, created (and its families registered) on first use."""
        if not cls._instance:
            # Threads building their first middlewares at once must not both register.
            with _INSTANCE_LOCK:
                if not cls._instance:
                    cls._instance = cls()
        return cls._instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.register()

    def register_metric(
        self, metric_cls: type, name: str, documentation: str, labelnames: Any = (), **kwargs: Any
    ) -> Any:
        """Create one family; override it to add label names (``labelnames`` is a fresh list to extend)."""
        return metric_cls(name, documentation, labelnames=labelnames, **kwargs)

    def _register_one(self, attr: str, buckets: tuple[float, ...]) -> Any:
        spec = SPECS[attr]
        metric_cls, name, documentation, labelnames = spec.cls, spec.name, spec.documentation, spec.labelnames
        kwargs: dict[str, Any] = {"namespace": conf.namespace()}
        if attr in LATENCY:
            kwargs["buckets"] = buckets
        elif attr in BODY:
            kwargs["buckets"] = self._body_buckets
        if labelnames:
            # A fresh list: users' register_metric overrides extend it in place.
            metric = self.register_metric(metric_cls, name, documentation, list(labelnames), **kwargs)
        else:
            metric = self.register_metric(metric_cls, name, documentation, **kwargs)
        if attr in LATENCY:
            exemplars.apply(metric)  # PROMETHEUS_EXEMPLARS (a no-op when off)
        setattr(self, attr, metric)
        return metric

    #: ``PROMETHEUS_TOTAL_BYTES_BUCKETS`` as the body-size histograms were made with.
    _body_buckets: tuple[float, ...] = tuple(PowersOf(2, 30))

    def register(self) -> None:
        """Create every family of ``SPECS`` through ``register_metric``."""
        buckets = conf.latency_buckets()
        self._latency_buckets = buckets
        self._body_buckets = options.total_bytes_buckets()
        self._disabled = options.disabled_metrics()
        for attr in SPECS:
            self._register_one(attr, buckets)

    def _use_latency_buckets(self, buckets: tuple[float, ...]) -> None:
        """Re-create the latency histograms if ``PROMETHEUS_LATENCY_BUCKETS`` changed (override_settings)."""
        if getattr(self, "_latency_buckets", buckets) == buckets:
            return
        self._latency_buckets = buckets
        self._recreate(LATENCY, buckets)

    def _use_body_buckets(self, buckets: tuple[float, ...]) -> None:
        """Re-create the body-size histograms if ``PROMETHEUS_TOTAL_BYTES_BUCKETS`` changed."""
        if self._body_buckets == buckets:
            return
        self._body_buckets = buckets
        self._recreate(BODY, self._latency_buckets)

    def _use_disabled(self, names: frozenset[str]) -> None:
        """Re-create the families ``PROMETHEUS_DISABLED_METRICS`` turned off or on (override_settings)."""
        if getattr(self, "_disabled", names) == names:
            return
        self._disabled = names
        from django_prometheus.disabled import DisabledMetric, listed

        namespace = conf.namespace()
        changed = tuple(
            attr
            for attr, spec in SPECS.items()
            if isinstance(getattr(self, attr, None), DisabledMetric) != listed(spec.cls, spec.name, namespace)
        )
        self._recreate(changed, self._latency_buckets)

    def _recreate(self, attrs: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        for attr in attrs:
            old = getattr(self, attr, None)
            if old is not None:
                try:
                    REGISTRY.unregister(old)
                except KeyError:  # the user unregistered it, or registered it elsewhere
                    pass
            self._register_one(attr, buckets)


def rules(metrics: Any) -> tuple[tuple[Rule, Any], ...]:
    """(rule, family) of every spec with a ``record`` rule, as ``metrics`` holds them (After's)."""
    found = []
    for attr, spec in SPECS.items():
        if spec.record is not None and attr not in BEFORE:
            metric = getattr(metrics, attr, None)
            if metric is not None:
                found.append((spec.record, metric))
    return tuple(found)


def has_default_labels(metrics: Any, attrs: tuple[str, ...]) -> bool:
    """Whether the families ``attrs`` of ``metrics`` have exactly upstream's label names.

    The condition of the default path: the core's recorders supply only those labels.
    """
    for attr in attrs:
        labelnames = getattr(getattr(metrics, attr, None), "_labelnames", None)
        if labelnames is None or tuple(labelnames) != SPECS[attr].labelnames:
            return False
    return True
