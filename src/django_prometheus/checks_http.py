"""``manage.py check`` for the HTTP side (issue 27): the middlewares' places, /metrics once, the options.

- ``django_prometheus.W201``: only one of the two middlewares is in ``MIDDLEWARE``;
- ``django_prometheus.W202``: ``PrometheusAfterMiddleware`` comes before ``PrometheusBeforeMiddleware``;
- ``django_prometheus.W203``: ``PrometheusAfterMiddleware`` is not the last middleware;
- ``django_prometheus.W204``: the /metrics view is in the URLconf more than once;
- ``django_prometheus.W205``: a ``PROMETHEUS_DISABLED_METRICS`` name matches no family;
- ``django_prometheus.E201``: a setting of ``django_prometheus.http.options`` cannot be used.

Subclasses of the middlewares count as the middleware they extend.
"""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_prometheus import conf, disabled
from django_prometheus.http import options

__all__ = ["check_metrics_urls", "check_middleware", "check_options"]

BEFORE = "django_prometheus.middleware.PrometheusBeforeMiddleware"
AFTER = "django_prometheus.middleware.PrometheusAfterMiddleware"


def _role(path: Any) -> str | None:
    # "before", "after" or None for one MIDDLEWARE entry (imported, so subclasses count).
    if path == BEFORE:
        return "before"
    if path == AFTER:
        return "after"
    from django_prometheus.middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware

    try:
        cls = import_string(path)
    except Exception:  # Django's own start-up reports a middleware that does not import
        return None
    if isinstance(cls, type):
        if issubclass(cls, PrometheusBeforeMiddleware):
            return "before"
        if issubclass(cls, PrometheusAfterMiddleware):
            return "after"
    return None


def check_middleware(**kwargs: Any) -> list[checks.CheckMessage]:
    """W201-W203: both middlewares, Before first of the two, After the last of all."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    roles = [_role(entry) for entry in middleware]
    if "before" not in roles and "after" not in roles:
        return []  # not using the HTTP metrics: nothing to say
    found: list[checks.CheckMessage] = []
    if "before" not in roles or "after" not in roles:
        missing, present = (BEFORE, AFTER) if "before" not in roles else (AFTER, BEFORE)
        where = "first" if missing == BEFORE else "last"
        found.append(
            checks.Warning(
                f"Only {present.rsplit('.', 1)[1]} is in MIDDLEWARE: the HTTP metrics need both.",
                hint=f"Add {missing!r} to MIDDLEWARE, {where}.",
                id="django_prometheus.W201",
            )
        )
        if "after" not in roles:
            return found
    before = roles.index("before") if "before" in roles else -1
    after = len(roles) - 1 - roles[::-1].index("after")
    if before > after:
        found.append(
            checks.Warning(
                "PrometheusAfterMiddleware comes before PrometheusBeforeMiddleware in MIDDLEWARE: "
                "the latency including middlewares and the per-view families are recorded wrongly.",
                hint=f"Put {BEFORE!r} first in MIDDLEWARE and {AFTER!r} last.",
                id="django_prometheus.W202",
            )
        )
    if after != len(roles) - 1:
        later = ", ".join(repr(m) for m in middleware[after + 1 :])
        found.append(
            checks.Warning(
                f"PrometheusAfterMiddleware is not the last entry of MIDDLEWARE (after it: {later}): "
                "responses those middlewares return or change are recorded wrongly.",
                hint=f"Move {AFTER!r} to the end of MIDDLEWARE.",
                id="django_prometheus.W203",
            )
        )
    return found


def _metrics_views(patterns: Any, prefix: str, depth: int = 0) -> list[str]:
    # The routes of every pattern whose view is ExportToDjangoView, includes followed.
    from django.urls import URLPattern, URLResolver

    from django_prometheus.exports import ExportToDjangoView

    found: list[str] = []
    if depth > 50:  # an include cycle: Django reports those itself
        return found
    for entry in patterns:
        if isinstance(entry, URLResolver):
            try:
                inner = entry.url_patterns
            except Exception:
                continue
            found.extend(_metrics_views(inner, prefix + str(entry.pattern), depth + 1))
        elif isinstance(entry, URLPattern):
            callback = entry.callback
            if (
                getattr(callback, "__wrapped__", callback) is ExportToDjangoView
                or callback is ExportToDjangoView
            ):
                found.append(prefix + str(entry.pattern))
    return found


def check_metrics_urls(**kwargs: Any) -> list[checks.CheckMessage]:
    """W204: ``django_prometheus.urls`` (or ``ExportToDjangoView``) routed more than once."""
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    from django.urls import get_resolver

    try:
        routes = _metrics_views(get_resolver().url_patterns, "/")
    except Exception:  # a URLconf that does not load: Django's own checks say why
        return []
    if len(routes) < 2:
        return []
    listed = ", ".join(repr(r) for r in routes)
    return [
        checks.Warning(
            f"The metrics view (django_prometheus.urls / ExportToDjangoView) is routed {len(routes)} times: "
            f"{listed}. Every route serves the same metrics; a scrape config that reads more than one "
            "counts everything twice.",
            hint="Keep one `path('', include('django_prometheus.urls'))` in the URLconf.",
            id="django_prometheus.W204",
        )
    ]


def check_options(**kwargs: Any) -> list[checks.CheckMessage]:
    """E201 for a setting of the HTTP options that cannot be used; W205 for an unknown disabled name."""
    from django_prometheus import servertiming
    from django_prometheus.http import options

    found: list[checks.CheckMessage] = []
    for read in (
        options.total_bytes_buckets,
        options.ignored_exceptions,
        options.disabled_metrics,
        options.server_timing,
        servertiming.allowed_networks,  # PROMETHEUS_SERVER_TIMING_ALLOWED_IPS, read as the header reads it
    ):
        try:
            read()
        except ImproperlyConfigured as exc:
            found.append(checks.Error(str(exc), id="django_prometheus.E201"))
    try:
        unknown = unknown_names()
    except ImproperlyConfigured:
        unknown = ()
    for name in unknown:
        found.append(
            checks.Warning(
                f"PROMETHEUS_DISABLED_METRICS names {name!r}, which is no metric family of "
                "django_prometheus: nothing is disabled by it.",
                hint="Use a family name as /metrics shows it (namespace included, a counter with its "
                f"'_total'); close matches: {', '.join(close_matches(name)) or 'none'}.",
                id="django_prometheus.W205",
            )
        )
    return found


#: The tag of these checks (``manage.py check --tag django_prometheus``).
TAG = "django_prometheus"
checks.register(check_middleware, TAG)
checks.register(check_metrics_urls, checks.Tags.urls, TAG)
checks.register(check_options, TAG)


def known_names() -> set[str]:
    """Every family name ``PROMETHEUS_DISABLED_METRICS`` can name, as exposed (namespace included)."""
    # The module-level families exist once these are imported (upstream imports them at start-up).
    import django_prometheus.cache.metrics  # noqa: F401
    import django_prometheus.db.metrics  # noqa: F401
    import django_prometheus.migrations  # noqa: F401
    import django_prometheus.models  # noqa: F401
    from django_prometheus.http.metrics import SPECS

    prefix = conf.namespace() + "_" if conf.namespace() else ""
    names = set(disabled._seen)
    for spec in SPECS.values():
        names.add(disabled._exposed_names(disabled._kind(spec.cls), spec.name, conf.namespace(), "", "")[0])
    names.update(prefix + name for name in disabled.LAZY_FAMILIES)
    return names


def unknown_names() -> list[str]:
    """The names of ``PROMETHEUS_DISABLED_METRICS`` that match no family (what the check reports)."""
    known = known_names()
    counters_bare = {n.removesuffix("_total") for n in known if n.endswith("_total")}
    return sorted(n for n in options.disabled_metrics() if n not in known and n not in counters_bare)


def close_matches(name: str) -> list[str]:
    """Known names close to ``name`` (the check's hint)."""
    return difflib.get_close_matches(name, sorted(known_names()), n=3, cutoff=0.7)
