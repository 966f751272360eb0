"""``PROMETHEUS_SERVER_TIMING``: a ``Server-Timing`` header from what the request's metrics measured.

With ``PROMETHEUS_SERVER_TIMING = True`` the middlewares (through the opt-in
features' core, ``_core/_features``) add to each response of an allowed client:

- ``app;dur=<ms>``: the request as ``PrometheusBeforeMiddleware`` timed it (its
  latency histogram's observation), from the outer middleware's start to its end;
- ``db;dur=<ms>;desc="<N> queries"`` with ``PROMETHEUS_REQUEST_DB_METRICS``;
- ``cache;dur=<ms>;desc="<N> ops"`` with ``PROMETHEUS_CACHE_OPERATION_METRICS``.

Allowed clients: ``PROMETHEUS_SERVER_TIMING_ALLOWED_IPS`` (addresses or CIDRs,
default loopback only), the client's address found as the /metrics allow-list
finds it (``access.client_address``: ``REMOTE_ADDR``, or the last untrusted hop
of ``X-Forwarded-For`` behind ``PROMETHEUS_METRICS_TRUSTED_PROXIES``). Never on
a streaming response; a ``Server-Timing`` the view set is kept and ours appended.

One writer for both (``_http.ServerTiming``, in the core): with the app entry alone
``PrometheusBeforeMiddleware``'s recorder calls it with the latency it observes (the
default path plus one allow lookup and one header); with db or cache accounting on, the
opt-in features' core calls it at the end of the request with all three entries.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from django_prometheus import access, conf
from django_prometheus._core import _http
from django_prometheus.http import options

__all__ = ["HEADER", "allowed_networks", "build", "cache_accounting", "core_writer", "value"]

HEADER = "Server-Timing"


def allowed_networks() -> tuple[list[Any], list[Any]]:
    """(allowed networks, trusted proxies), or ``ImproperlyConfigured`` naming the setting.

    The one reading of ``PROMETHEUS_SERVER_TIMING_ALLOWED_IPS`` (``manage.py check``
    reports what it raises): a list of strings (``options``), parsed by the /metrics
    allow-list's parser (``access``).
    """
    allowed = access._networks(
        "PROMETHEUS_SERVER_TIMING_ALLOWED_IPS", list(options.server_timing_allowed_ips())
    )
    proxies = conf.get("PROMETHEUS_METRICS_TRUSTED_PROXIES")
    trusted = [] if proxies is None else access._networks("PROMETHEUS_METRICS_TRUSTED_PROXIES", proxies)
    return allowed, trusted


def cache_accounting() -> bool:
    """Whether the ``cache`` entry is measured: ``PROMETHEUS_CACHE_OPERATION_METRICS`` is on."""
    from django_prometheus.cache import operations

    return bool(operations.enabled())


def value(app_seconds: float, db: Any = None, cache: Any = None) -> str:
    """The header's entries: ``app``, then ``db`` and ``cache`` when their accounting ran."""
    return str(_http.server_timing_value(app_seconds, db, cache))


def _accounting() -> bool:
    # The db or cache entry is measured: the features' core writes the header (with app).
    from django_prometheus.db import per_request

    return bool(per_request.enabled()) or cache_accounting()


def _decider(allowed: list[Any], proxies: list[Any]) -> Any:
    def decide(remote: Any, forwarded: Any) -> bool:
        address = access.client_address(remote, forwarded, proxies)
        return address is not None and access._within(address, allowed)

    return decide


def core_writer() -> Any:
    """The Before recorder's writer (``_http.ServerTiming``: the app entry alone), or None.

    None when off, and when the db or cache entry is measured: then the opt-in features'
    core (``build()``) writes the whole header.
    """
    if not options.server_timing() or _accounting():
        return None
    allowed, proxies = allowed_networks()
    return _http.ServerTiming(_decider(allowed, proxies), bool(proxies), HttpResponse)


def build() -> Any:
    """The features' ``server_timing`` (app, db and cache entries), or None when off or app alone."""
    if not options.server_timing():
        return None
    allowed, proxies = allowed_networks()  # validated here too: a bad value fails at once
    if not _accounting():
        return None
    return _http.ServerTiming(_decider(allowed, proxies), bool(proxies), HttpResponse)
