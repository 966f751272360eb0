"""SQLite, instrumented: Django's backend with the exporting cursor wrappers."""

from django.db.backends.sqlite3 import base

from django_prometheus.db.common import DatabaseWrapperMixin, SQLiteTransactionMixin


class DatabaseFeatures(base.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class DatabaseWrapper(SQLiteTransactionMixin, DatabaseWrapperMixin, base.DatabaseWrapper):
    pass
