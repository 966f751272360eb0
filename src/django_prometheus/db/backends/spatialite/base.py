"""SpatiaLite, instrumented: Django's GIS SQLite backend with the exporting cursor wrappers."""

from django.contrib.gis.db.backends.spatialite import base, features

from django_prometheus.db.common import DatabaseWrapperMixin, SQLiteTransactionMixin


class DatabaseFeatures(features.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class DatabaseWrapper(SQLiteTransactionMixin, DatabaseWrapperMixin, base.DatabaseWrapper):
    pass
