"""PostgreSQL (psycopg 3 or psycopg2, pooled or not), instrumented.

Counting happens in the cursor wrappers Django makes for every cursor
(``make_cursor``/``make_debug_cursor``), so the driver's ``cursor_factory``
stays the one Django or ``OPTIONS["cursor_factory"]`` chose (Django checks it
by identity, e.g. for server-side binding), and connections a Django 5.1+
pool hands out need nothing per checkout.
"""

from typing import Any

from django.db.backends.postgresql import base

from django_prometheus.db import pool
from django_prometheus.db.common import DatabaseWrapperMixin


class DatabaseFeatures(base.DatabaseFeatures):
    """Django's, unchanged (kept importable from here as in django-prometheus)."""


class PostgresqlWrapperMixin(DatabaseWrapperMixin):
    """The PostgreSQL instrumentation, shared with the PostGIS backend.

    Beyond the common mixin: a pool's checkouts, returns and closing report to
    the pool metrics (in multiprocess mode they write the worker's statistics).
    """

    def get_new_connection(self, *args: Any, **kwargs: Any) -> Any:
        get = super().get_new_connection
        return pool.checkout(self, lambda: get(*args, **kwargs))

    def _close(self) -> Any:
        return pool.returned(self, super()._close)

    if hasattr(base.DatabaseWrapper, "close_pool"):  # Django 5.1+: no such method before

        def close_pool(self) -> Any:
            return pool.closing_pool(self, super().close_pool)  # type: ignore[misc]


class DatabaseWrapper(PostgresqlWrapperMixin, base.DatabaseWrapper):
    pass
