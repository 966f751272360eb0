"""Helpers the HTTP tests share: read samples, and the exposition CONTRACT.md promises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "OPTIONS": {
            "loaders": [("django.template.loaders.locmem.Loader", {"hello.html": "Hello {{ name }}"})]
        },
    }
]

# CONTRACT.md's 19 HTTP families: declared name -> (kind, label names).
CONTRACT_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "django_http_requests_before_middlewares_total": ("counter", ()),
    "django_http_responses_before_middlewares_total": ("counter", ()),
    "django_http_requests_latency_including_middlewares_seconds": ("histogram", ()),
    "django_http_requests_unknown_latency_including_middlewares_total": ("counter", ()),
    "django_http_requests_latency_seconds_by_view_method": ("histogram", ("view", "method")),
    "django_http_requests_unknown_latency_total": ("counter", ()),
    "django_http_ajax_requests_total": ("counter", ()),
    "django_http_requests_total_by_method": ("counter", ("method",)),
    "django_http_requests_total_by_transport": ("counter", ("transport",)),
    "django_http_requests_total_by_view_transport_method": ("counter", ("view", "transport", "method")),
    "django_http_requests_body_total_bytes": ("histogram", ()),
    "django_http_responses_total_by_templatename": ("counter", ("templatename",)),
    "django_http_responses_total_by_status": ("counter", ("status",)),
    "django_http_responses_total_by_status_view_method": ("counter", ("status", "view", "method")),
    "django_http_responses_body_total_bytes": ("histogram", ()),
    "django_http_responses_total_by_charset": ("counter", ("charset",)),
    "django_http_responses_streaming_total": ("counter", ()),
    "django_http_exceptions_total_by_type": ("counter", ("type",)),
    "django_http_exceptions_total_by_view": ("counter", ("view",)),
}


def expected_samples() -> set[tuple[str, tuple[str, ...]]]:
    """(sample name, sorted label names) for every family, as prometheus_client exposes them."""
    out = set()
    for declared, (kind, labels) in CONTRACT_FAMILIES.items():
        if kind == "counter":
            base = declared[: -len("_total")] if declared.endswith("_total") else declared
            out.add((base + "_total", tuple(sorted(labels))))
            out.add((base + "_created", tuple(sorted(labels))))
        else:
            out.add((declared + "_bucket", tuple(sorted((*labels, "le")))))
            for suffix in ("_count", "_sum", "_created"):
                out.add((declared + suffix, tuple(sorted(labels))))
    return out


def value(name: str, registry=REGISTRY, **labels: str) -> float:
    """A sample's value, 0 when it does not exist (yet)."""
    return registry.get_sample_value(name, labels) or 0.0


def label_values(name: str, label: str, registry=REGISTRY) -> set[str]:
    """Every value ``label`` takes among the samples called ``name``."""
    return {
        s.labels[label]
        for family in registry.collect()
        for s in family.samples
        if s.name == name and label in s.labels
    }


class Delta:
    """Sample values now, to compare with later: ``d = Delta(); …; d("x_total", a="b") == 1``."""

    def __init__(self, registry=REGISTRY) -> None:
        self.registry = registry
        self.before = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in registry.collect() for s in f.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return value(name, self.registry, **labels) - self.before.get(key, 0.0)


def _owned(instance) -> list[MetricWrapperBase]:
    return [m for m in vars(instance).values() if isinstance(m, MetricWrapperBase)]


@contextmanager
def metrics_instead(cls) -> Iterator:
    """Give the HTTP family names to a fresh ``cls`` instance (a Metrics subclass), then back.

    Upstream's recipe for a subclass that changes families: free the names the
    default instance registered, let the subclass build its own, and afterwards
    restore the default's so other tests see upstream's families again.
    """
    from django_prometheus.middleware import Metrics

    default = _owned(Metrics.get_instance())
    for metric in default:
        REGISTRY.unregister(metric)
    cls._instance = None
    try:
        yield cls.get_instance()
    finally:
        for metric in _owned(cls._instance):
            REGISTRY.unregister(metric)
        cls._instance = None
        for metric in default:
            REGISTRY.register(metric)
