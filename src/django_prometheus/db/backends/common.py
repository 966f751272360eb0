"""Kept importable from here as in django-prometheus: the PostgreSQL cursor class Django's backend uses."""

from typing import Any

__all__ = ["get_postgres_cursor_class"]


def get_postgres_cursor_class() -> Any:
    """Django's psycopg ``Cursor`` (``django.db.backends.postgresql.base.Cursor``; Django 4.2+).

    Our PostgreSQL backend never sets it as ``cursor_factory`` (it counts at
    Django's cursor-wrapper level); a custom backend built on Django's own
    ``DatabaseWrapper`` may still wrap it with ``ExportingCursorWrapper``.
    """
    from django.db.backends.postgresql.base import Cursor  # imports psycopg: only when asked

    return Cursor
