"""Settings read once, at import, with django-prometheus' defaults.

Like upstream, a module that imports this before settings are configured (a tool,
a docs build, a test runner's collection) gets the defaults instead of an
``ImproperlyConfigured`` error.
"""

from django.conf import settings

DEFAULT_LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, float("inf"),
)  # fmt: skip


def setting(name: str, default):
    """``settings.<name>`` when settings are configured, else ``default``."""
    return getattr(settings, name, default) if settings.configured else default


NAMESPACE: str = setting("PROMETHEUS_METRIC_NAMESPACE", "")

PROMETHEUS_LATENCY_BUCKETS = setting("PROMETHEUS_LATENCY_BUCKETS", DEFAULT_LATENCY_BUCKETS)
