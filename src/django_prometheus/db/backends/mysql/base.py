"""MySQL and MariaDB (mysqlclient), instrumented: Django's cursor wrapper, subclassed once per alias."""

from typing import Any

from django.db.backends.mysql import base

from django_prometheus.db.common import DatabaseWrapperMixin


class DatabaseFeatures(base.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class DatabaseWrapper(DatabaseWrapperMixin, base.DatabaseWrapper):
    CURSOR_CLASS = base.CursorWrapper

    def create_cursor(self, name: Any = None) -> Any:
        # Django wraps the MySQLdb cursor in its CursorWrapper; ours is a subclass of it.
        return self._prometheus_cursor_class(self.connection.cursor())
