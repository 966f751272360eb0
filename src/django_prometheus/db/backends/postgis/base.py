"""PostGIS, instrumented: Django's GIS PostgreSQL backend with the PostgreSQL instrumentation."""

from django.contrib.gis.db.backends.postgis import base, features

from django_prometheus.db.backends.postgresql.base import PostgresqlWrapperMixin


class DatabaseFeatures(features.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class DatabaseWrapper(PostgresqlWrapperMixin, base.DatabaseWrapper):
    pass
