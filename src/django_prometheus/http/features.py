"""The opt-in HTTP features: settings read once, families created once, the core's ``Features`` installed.

- ``PROMETHEUS_ROUTE_METRICS`` (+ ``PROMETHEUS_GROUP_STATUS_CODES``):
  ``django_http_route_requests_total{route,method,status}`` and
  ``django_http_route_request_duration_seconds{route,method}``;
- ``PROMETHEUS_EXCLUDE_PATHS`` / ``PROMETHEUS_EXCLUDE_VIEWS`` and
  ``django_prometheus.decorators.do_not_track``: requests in no HTTP family;
- ``PROMETHEUS_INFLIGHT_METRICS``: ``django_http_requests_in_progress{method}``;
- ``PROMETHEUS_QUEUE_TIME_METRICS``: ``django_http_request_queue_seconds``;
- ``PROMETHEUS_REQUEST_DB_METRICS``: the per-request DB accounting
  (``django_prometheus.db.per_request``) begun and ended around each request;
- ``PROMETHEUS_SERVER_TIMING``: the ``Server-Timing`` header (``django_prometheus.servertiming``).

``install()`` runs when the app is ready and again whenever Django reports a
change of one of these settings (``override_settings``); with every feature
off nothing is installed (``_http.get_features()`` is None) and the default path
pays one pointer check. The per-request work is the core's (``_core/_features``).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from django_prometheus import conf, servertiming
from django_prometheus._core import _cache, _features, _http
from django_prometheus.disabled import DisabledMetric
from django_prometheus.http import options
from django_prometheus.metrics import Counter, Gauge, Histogram

__all__ = ["SETTINGS", "build", "connect_signals", "families", "install", "view_marked"]

#: The settings ``install()`` reads.
SETTINGS = frozenset(
    {
        "PROMETHEUS_ROUTE_METRICS",
        "PROMETHEUS_GROUP_STATUS_CODES",
        "PROMETHEUS_EXCLUDE_PATHS",
        "PROMETHEUS_EXCLUDE_VIEWS",
        "PROMETHEUS_INFLIGHT_METRICS",
        "PROMETHEUS_QUEUE_TIME_METRICS",
        "PROMETHEUS_REQUEST_DB_METRICS",
        "PROMETHEUS_METRIC_NAMESPACE",
        "PROMETHEUS_LATENCY_BUCKETS",
        "PROMETHEUS_DISABLED_METRICS",
        "PROMETHEUS_SERVER_TIMING",
        "PROMETHEUS_SERVER_TIMING_ALLOWED_IPS",
        "PROMETHEUS_METRICS_TRUSTED_PROXIES",
        "PROMETHEUS_CACHE_OPERATION_METRICS",
    }
)

_lock = threading.RLock()
_families: dict[str, Any] = {}
_families_key: Any = None
_views_marked = False


class _Config:
    """What the core's ``Features`` receives (see its docstring)."""

    route_requests: Any = None
    route_duration: Any = None
    group_status = False
    inflight: Any = None
    queue: Any = None
    exclude_paths: Any = None
    exclude_views: frozenset[str] = frozenset()
    defer = False
    db_begin: Any = None
    db_end: Any = None
    db_discard: Any = None
    server_timing: Any = None
    cache_begin: Any = None
    cache_end: Any = None


def exclude_paths() -> re.Pattern[str] | None:
    """``PROMETHEUS_EXCLUDE_PATHS``: one regex, searched in ``request.path_info``, or None."""
    patterns = conf.get("PROMETHEUS_EXCLUDE_PATHS")
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def families() -> dict[str, Any]:
    """The four families of the features (created on first use; again if the namespace or buckets change)."""
    global _families_key
    with _lock:
        key = (conf.namespace(), conf.latency_buckets(), options.disabled_metrics())
        if _families_key != key:
            _unregister()
            namespace, buckets, _ = key
            route_duration = Histogram(
                "django_http_route_request_duration_seconds",
                "Histogram of request processing time by URL route and method.",
                ["route", "method"],
                namespace=namespace,
                buckets=buckets,
            )
            _apply_exemplars(route_duration)
            _families.update(
                route_requests=Counter(
                    "django_http_route_requests_total",
                    "Count of responses by URL route, method and status.",
                    ["route", "method", "status"],
                    namespace=namespace,
                ),
                route_duration=route_duration,
                inflight=Gauge(
                    "django_http_requests_in_progress",
                    "Requests being processed (responses not yet closed), by method.",
                    ["method"],
                    namespace=namespace,
                    multiprocess_mode="livesum",
                ),
                queue=Histogram(
                    "django_http_request_queue_seconds",
                    "Histogram of the time requests waited before Django (X-Request-Start, X-Queue-Start).",
                    namespace=namespace,
                    buckets=buckets,
                ),
            )
            _families_key = key
        return dict(_families)


def _unregister() -> None:
    from prometheus_client import REGISTRY

    for metric in _families.values():
        try:
            REGISTRY.unregister(metric)
        except KeyError:  # the user unregistered it
            pass
    _families.clear()


def _apply_exemplars(metric: Any) -> None:
    from django_prometheus.http.exemplars import apply

    apply(metric)


def _per_request() -> Any:
    from django_prometheus.db import per_request

    return per_request if per_request.enabled() else None


def build() -> Any:
    """The core's ``Features`` for the current settings, or None when every feature is off.

    Raises ``ImproperlyConfigured`` for a setting that breaks its rule (``conf.SETTINGS``).
    """
    config = _Config()
    routes = conf.get("PROMETHEUS_ROUTE_METRICS")
    config.group_status = conf.get("PROMETHEUS_GROUP_STATUS_CODES")
    inflight = conf.get("PROMETHEUS_INFLIGHT_METRICS")
    queue = conf.get("PROMETHEUS_QUEUE_TIME_METRICS")
    config.exclude_paths = exclude_paths()
    config.exclude_views = frozenset(conf.get("PROMETHEUS_EXCLUDE_VIEWS"))
    config.defer = bool(config.exclude_views) or _views_marked
    per_request = _per_request()
    if per_request is not None:
        config.db_begin = per_request.begin
        config.db_end = per_request.end
        config.db_discard = per_request.discard
    config.server_timing = servertiming.build()
    if config.server_timing is not None and servertiming.cache_accounting():
        config.cache_begin, config.cache_end = _cache.begin_request, _cache.end_request
    if not (
        routes
        or inflight
        or queue
        or config.exclude_paths is not None
        or config.defer
        or per_request
        or config.server_timing
    ):
        return None
    if routes or inflight or queue:
        made = families()
        # PROMETHEUS_DISABLED_METRICS: a feature whose families are all disabled is off.
        off = {name for name, family in made.items() if isinstance(family, DisabledMetric)}
        routes = routes and not {"route_requests", "route_duration"} <= off
        inflight = inflight and "inflight" not in off
        queue = queue and "queue" not in off
        if routes:
            config.route_requests = made["route_requests"].labels
            config.route_duration = made["route_duration"].labels
        if inflight:
            config.inflight = made["inflight"].labels
        if queue:
            config.queue = made["queue"]._cell
    return _features.Features(config)


def install() -> None:
    """Build the features from the settings and install them in the middlewares' core (None: all off)."""
    global _families_key
    with _lock:
        built = build()
        _http.set_features(built)
        if built is None:  # every feature off: their families leave the registry too
            _unregister()
            _families_key = None


def view_marked() -> None:
    """``do_not_track`` marked a view: view exclusions are on from now on."""
    global _views_marked
    with _lock:
        if _views_marked:
            return
        _views_marked = True
        try:
            install()
        except ImproperlyConfigured:  # reported by the system check, refused by the middlewares
            pass


def _changed(setting: str, **kwargs: Any) -> None:
    if setting in SETTINGS:
        install()


def connect_signals() -> None:
    """Re-install the features when a test changes their settings (the app's ``ready()``; idempotent)."""
    setting_changed.connect(_changed, weak=False, dispatch_uid="django_prometheus.http.features")
