"""PostgreSQL (psycopg 3 or psycopg2, pooled or not), instrumented.

Counting happens in the cursor wrappers Django makes for every cursor
(``make_cursor``/``make_debug_cursor``), so the driver's ``cursor_factory``
stays the one Django or ``OPTIONS["cursor_factory"]`` chose (Django checks it
by identity, e.g. for server-side binding), and connections a Django 5.1+
pool hands out need nothing per checkout.
"""

from django.db.backends.postgresql import base

from django_prometheus.db.common import DatabaseWrapperMixin


class DatabaseFeatures(base.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class PostgresqlWrapperMixin(DatabaseWrapperMixin):
    """The PostgreSQL instrumentation, shared with the PostGIS backend (nothing beyond the common mixin)."""


class DatabaseWrapper(PostgresqlWrapperMixin, base.DatabaseWrapper):
    pass
