"""Queries per request: ``PROMETHEUS_REQUEST_DB_METRICS = True`` (the middlewares call ``begin``/``end``).

Between ``begin()`` and ``end(token, route)`` every query that our DB
instrumentation sees (an ENGINE of ours, or ``PROMETHEUS_INSTRUMENT_DATABASES``)
in this context is added to the request: one per ``execute``, one per
``executemany`` (whatever the number of parameter sets), with its time, and
the ``BEGIN``/``COMMIT``/``ROLLBACK`` Django sends through the driver's own calls
(``common.account_transaction_control`` and the ENGINE mixin): the count is the
one ``assertNumQueries`` gives for the same code, on every vendor. The
state is a context variable, so it follows the request through ASGI tasks,
async views and ``sync_to_async`` (which copies the context into its thread),
never the thread: two concurrent requests never share counts.

At ``end`` the request is observed in three families, by route:
``django_http_request_db_queries`` (queries), ``django_http_request_db_seconds``
(time in the database; ``PROMETHEUS_LATENCY_BUCKETS``, the request latency's
own bounds, so the two compare bucket for bucket) and
``django_http_request_db_repeated_queries_total``, which counts requests that ran
one statement (same SQL text, parameters ignored) ``REPEAT_THRESHOLD`` (5) times
or more: the N+1 signal. Memory per request is bounded: at most
``MAX_STATEMENTS`` (1,000) distinct statements are remembered, and none once
the request is known to repeat one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from prometheus_client import REGISTRY

from django_prometheus._core import _db
from django_prometheus.conf import NAMESPACE, PROMETHEUS_LATENCY_BUCKETS, get_or_default
from django_prometheus.metrics import Counter, Histogram

__all__ = [
    "MAX_STATEMENTS",
    "QUERY_BUCKETS",
    "REPEAT_THRESHOLD",
    "SETTING",
    "begin",
    "connect_signals",
    "discard",
    "enabled",
    "end",
    "families",
]

logger = logging.getLogger(__name__)

SETTING = "PROMETHEUS_REQUEST_DB_METRICS"
#: Bounds of ``django_http_request_db_queries``: counts, not seconds.
QUERY_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, float("inf"))
REPEAT_THRESHOLD: int = _db.REPEAT_THRESHOLD
MAX_STATEMENTS: int = _db.MAX_STATEMENTS

_lock = threading.Lock()
_enabled: bool | None = None
_families: tuple[Any, Any, Any] | None = None
# route -> (queries, seconds, repeated) cells, resolved once per route.
_route_cells: dict[str, tuple[Any, Any, Any]] = {}


def enabled() -> bool:
    """``PROMETHEUS_REQUEST_DB_METRICS``; ``override_settings`` reaches it (``setting_changed``)."""
    global _enabled
    value = _enabled
    if value is None:
        # A settings read costs ~11,000 instructions (LazySettings.__getattribute__): once, then cached.
        value = get_or_default(SETTING)
        if settings.configured:
            connect_signals()  # before caching, also when the app is not in INSTALLED_APPS
            _enabled = value
    return value


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    global _enabled
    if setting == SETTING:
        _enabled = None


def connect_signals() -> None:
    """Forget the cached setting when a test changes it (the app's ``ready()``; idempotent)."""
    setting_changed.connect(_on_setting_changed, dispatch_uid="django_prometheus.db.per_request")


def families(registry: Any = REGISTRY) -> tuple[Any, Any, Any]:
    """The three families, registered on first call (absent until the feature is used).

    ``registry=None``: three fresh, unregistered ones (what the metrics reference describes).
    """
    global _families
    if registry is not REGISTRY:
        return _declare(registry)
    if _families is None:
        with _lock:
            if _families is None:
                _families = _declare(REGISTRY)
    return _families


def _declare(registry: Any) -> tuple[Any, Any, Any]:
    return (
        Histogram(
            "django_http_request_db_queries",
            "Histogram of database queries per request (executemany counts one), by route.",
            ["route"],
            buckets=QUERY_BUCKETS,
            namespace=NAMESPACE,
            registry=registry,
        ),
        Histogram(
            "django_http_request_db_seconds",
            "Histogram of time spent in database queries per request, by route.",
            ["route"],
            buckets=PROMETHEUS_LATENCY_BUCKETS,
            namespace=NAMESPACE,
            registry=registry,
        ),
        Counter(
            "django_http_request_db_repeated_queries",
            f"Counter of requests that ran one statement (same SQL, any parameters) "
            f"{REPEAT_THRESHOLD} or more times, by route.",
            ["route"],
            namespace=NAMESPACE,
            registry=registry,
        ),
    )


def _cells(route: str) -> tuple[Any, Any, Any]:
    cells = _route_cells.get(route)
    if cells is None:
        queries, seconds, repeated = families()
        with _lock:
            cells = _route_cells.get(route)
            if cells is None:
                cells = _route_cells[route] = (
                    queries.labels(route),
                    seconds.labels(route),
                    repeated.labels(route),
                )
    return cells


def begin() -> Any:
    """Start accounting the current request; the token goes to ``end``. Never raises (None then)."""
    try:
        return _db.begin_request()
    except Exception:  # pragma: no cover - defensive: instrumentation never breaks a request
        logger.exception("django_prometheus: could not start per-request DB accounting")
        return None


def end(token: Any, route: str) -> None:
    """Stop accounting ``token``'s request and observe it under ``route``. Never raises.

    ``route`` is the route rule's (``django_prometheus.http.routes.route``): the
    matched URL pattern, or ``<unmatched>``, so its values are bounded.
    """
    if token is None:
        return
    try:
        _db.end_request(token)
        queries, seconds, repeated = _cells(route)
        queries.observe(token.queries)
        seconds.observe(token.seconds)
        if token.repeated:
            repeated.inc()
    except Exception:
        logger.exception("django_prometheus: could not record per-request DB metrics")


def discard(token: Any) -> None:
    """Stop accounting ``token``'s request without observing it (an excluded request). Never raises."""
    if token is None:
        return
    try:
        _db.end_request(token)
    except Exception:  # pragma: no cover - defensive: instrumentation never breaks a request
        logger.exception("django_prometheus: could not stop per-request DB accounting")
