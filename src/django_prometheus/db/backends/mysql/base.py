"""MySQL and MariaDB (mysqlclient), instrumented: Django's backend with the exporting cursor wrappers."""

from django.db.backends.mysql import base

from django_prometheus.db.common import DatabaseWrapperMixin


class DatabaseFeatures(base.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class DatabaseWrapper(DatabaseWrapperMixin, base.DatabaseWrapper):
    pass
