"""SQLite, instrumented: Django's backend with the exporting cursor class."""

from django.db.backends.sqlite3 import base

from django_prometheus.db.common import DatabaseWrapperMixin


class DatabaseFeatures(base.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class DatabaseWrapper(DatabaseWrapperMixin, base.DatabaseWrapper):
    CURSOR_CLASS = base.SQLiteCursorWrapper
