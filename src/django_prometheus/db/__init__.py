"""Database metrics and instrumented backends (``ENGINE = "django_prometheus.db.backends.<vendor>"``)."""

from django_prometheus.db.metrics import (
    connection_errors_total,
    connections_total,
    errors_total,
    execute_many_total,
    execute_total,
    query_duration_seconds,
)

__all__ = [
    "connection_errors_total",
    "connections_total",
    "errors_total",
    "execute_many_total",
    "execute_total",
    "query_duration_seconds",
]
