"""Cache metrics: upstream's four, labelled by backend, and the opt-in per-operation families."""

from django_prometheus.conf import NAMESPACE, get_or_default
from django_prometheus.metrics import Counter, Histogram

OPERATION_BUCKETS = get_or_default("PROMETHEUS_CACHE_OPERATION_BUCKETS")

django_cache_get_total = Counter(
    "django_cache_get_total", "Total get requests on cache", ["backend"], namespace=NAMESPACE
)
django_cache_hits_total = Counter(
    "django_cache_get_hits_total", "Total hits on cache", ["backend"], namespace=NAMESPACE
)
django_cache_misses_total = Counter(
    "django_cache_get_misses_total", "Total misses on cache", ["backend"], namespace=NAMESPACE
)
django_cache_get_fail_total = Counter(
    "django_cache_get_fail_total", "Total get request failures by cache", ["backend"], namespace=NAMESPACE
)

# Opt-in (PROMETHEUS_CACHE_OPERATION_METRICS): registered by the first backend that
# records them, so a scrape shows nothing new while the setting is off.
django_cache_operations_total = Counter(
    "django_cache_operations_total",
    "Cache operations by alias, backend, operation and result (get_many: one per distinct key).",
    ["alias", "backend", "operation", "result"],
    namespace=NAMESPACE,
    registry=None,
)
django_cache_operation_duration_seconds = Histogram(
    "django_cache_operation_duration_seconds",
    "Duration of cache operations by alias, backend and operation.",
    ["alias", "backend", "operation"],
    namespace=NAMESPACE,
    buckets=OPERATION_BUCKETS,
    registry=None,
)
