"""``manage.py check``: every bad ``PROMETHEUS_*`` setting, and two distributions sharing one package."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from django.core import checks

from django_prometheus import conf

__all__ = ["DISTRIBUTION", "UPSTREAM_DISTRIBUTION", "check_distributions", "check_settings"]

DISTRIBUTION = "django-prometheus-compiled"
UPSTREAM_DISTRIBUTION = "django-prometheus"


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """One error per setting that breaks its rule in ``conf.SETTINGS`` (E001: access, E002: any other)."""
    return [checks.Error(message, id=check_id) for _, check_id, message in conf.errors()]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_distributions(**kwargs: Any) -> list[checks.CheckMessage]:
    """W001 when upstream's ``django-prometheus`` is and ours are installed: both own the package."""
    ours, upstream = _version(DISTRIBUTION), _version(UPSTREAM_DISTRIBUTION)
    if ours is None or upstream is None:
        return []
    return [
        checks.Warning(
            f"Both {UPSTREAM_DISTRIBUTION} {upstream} and {DISTRIBUTION} {ours} are installed. They provide "
            "the same django_prometheus package, so its files on disk are a mix of whichever was installed "
            "last, and uninstalling either one deletes files the other needs.",
            hint=f"pip uninstall -y {UPSTREAM_DISTRIBUTION}, then reinstall ours over what that removed: "
            f"pip install --force-reinstall --no-deps <{DISTRIBUTION}'s wheel, checkout or name>. If a "
            f"requirement pulls {UPSTREAM_DISTRIBUTION} in, see the README's "
            '"Migrating from django-prometheus".',
            id="django_prometheus.W001",
        )
    ]
