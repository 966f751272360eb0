"""Settings read once, at import, with django-prometheus' defaults."""

from django.conf import settings

DEFAULT_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, float("inf"),
)  # fmt: skip

NAMESPACE: str = getattr(settings, "PROMETHEUS_METRIC_NAMESPACE", "")

PROMETHEUS_LATENCY_BUCKETS = getattr(settings, "PROMETHEUS_LATENCY_BUCKETS", DEFAULT_LATENCY_BUCKETS)
