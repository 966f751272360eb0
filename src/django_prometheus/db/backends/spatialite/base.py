"""SpatiaLite, instrumented: Django's GIS SQLite backend with the exporting cursor class."""

from django.contrib.gis.db.backends.spatialite import base, features
from django.db.backends.sqlite3.base import SQLiteCursorWrapper

from django_prometheus.db.common import DatabaseWrapperMixin


class DatabaseFeatures(features.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class DatabaseWrapper(DatabaseWrapperMixin, base.DatabaseWrapper):
    CURSOR_CLASS = SQLiteCursorWrapper
