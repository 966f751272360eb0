"""PostgreSQL (psycopg 3 or psycopg2, pooled or not), instrumented.

The exporting cursor class goes into the connection parameters as
``cursor_factory``, so every connection, including those a Django 5.1+
connection pool opens, makes instrumented cursors without any per-connection
work. Server-side (named) cursors that Django builds itself are switched to
their exporting class when created.
"""

from typing import Any

from django.db.backends.postgresql import base

from django_prometheus.db.common import DatabaseWrapperMixin, export_cursor


class DatabaseFeatures(base.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class PostgresqlWrapperMixin(DatabaseWrapperMixin):
    """The PostgreSQL specifics, shared with the PostGIS backend."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()  # type: ignore[misc]
        factory = params.get("cursor_factory")
        if factory is not None and not getattr(factory, "_prometheus_exporting", False):
            params["cursor_factory"] = self.prometheus_cursor_class(factory)
        return params

    def create_cursor(self, name: Any = None) -> Any:
        cursor = super().create_cursor(name)
        if name:
            export_cursor(cursor, self.alias, self.vendor)
        return cursor


class DatabaseWrapper(PostgresqlWrapperMixin, base.DatabaseWrapper):
    pass
