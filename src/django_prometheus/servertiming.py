"""``PROMETHEUS_SERVER_TIMING``: a ``Server-Timing`` header from what the request's metrics measured.

With ``PROMETHEUS_SERVER_TIMING = True`` the middlewares (through the opt-in
features' core, ``_core/_extras``) add to each response of an allowed client:

- ``app;dur=<ms>``: the request as ``PrometheusBeforeMiddleware`` timed it (its
  latency histogram's observation), from the outer middleware's start to its end;
- ``db;dur=<ms>;desc="<N> queries"`` with ``PROMETHEUS_REQUEST_DB_METRICS``;
- ``cache;dur=<ms>;desc="<N> ops"`` with ``PROMETHEUS_CACHE_OPERATION_METRICS``.

Allowed clients: ``PROMETHEUS_SERVER_TIMING_ALLOWED_IPS`` (addresses or CIDRs,
default loopback only), the client's address found as the /metrics allow-list
finds it (``access.client_address``: ``REMOTE_ADDR``, or the last untrusted hop
of ``X-Forwarded-For`` behind ``PROMETHEUS_METRICS_TRUSTED_PROXIES``). Never on
a streaming response; a ``Server-Timing`` the view set is kept and ours appended.

With the app entry alone, ``PrometheusBeforeMiddleware``'s recorder writes it in the
core (``_http.ServerTiming``, from the latency it observes): the default path plus
one allow lookup and one header. With db or cache accounting on, the opt-in features'
core writes the three entries at the end of the request (``ServerTiming`` below).
"""

from __future__ import annotations

from typing import Any

from django_prometheus import access, conf
from django_prometheus._core import _http
from django_prometheus.http import options

__all__ = ["HEADER", "ServerTiming", "allowed_networks", "build", "cache_accounting", "core_writer", "value"]

HEADER = "Server-Timing"
#: Allow decisions kept per (REMOTE_ADDR, X-Forwarded-For); then the table starts again.
_ALLOWED_CACHE_MAX = 1024


def allowed_networks() -> tuple[list[Any], list[Any]]:
    """(allowed networks, trusted proxies), or ``ImproperlyConfigured`` naming the setting."""
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
    parts = [f"app;dur={app_seconds * 1000.0:.3f}"]
    if db is not None:
        parts.append(f'db;dur={db.seconds * 1000.0:.3f};desc="{db.queries} queries"')
    if cache is not None:
        parts.append(f'cache;dur={cache.seconds * 1000.0:.3f};desc="{cache.operations} ops"')
    return ", ".join(parts)


class ServerTiming:
    """What the features' core calls at the end of a request: ``(request, response, app, db, cache)``."""

    __slots__ = ("_allowed", "_decided", "_proxies")

    def __init__(self, allowed: list[Any], proxies: list[Any]) -> None:
        self._allowed = allowed
        self._proxies = proxies
        self._decided: dict[tuple[Any, Any], bool] = {}

    def allows(self, request: Any) -> bool:
        """Whether the request's client may see the header (the /metrics allow-list's address rules)."""
        meta = request.META
        remote = meta.get("REMOTE_ADDR")
        forwarded = meta.get("HTTP_X_FORWARDED_FOR") if self._proxies else None
        key = (remote, forwarded)
        try:
            found = self._decided.get(key)
        except TypeError:  # an unhashable META value
            found, key = None, None
        if found is None:
            address = access.client_address(remote, forwarded, self._proxies)
            found = address is not None and access._within(address, self._allowed)
            if key is not None and (forwarded is None or len(forwarded) <= 256):
                if len(self._decided) >= _ALLOWED_CACHE_MAX:
                    self._decided.clear()
                self._decided[key] = found
        return found

    def __call__(self, request: Any, response: Any, app: float, db: Any, cache: Any) -> None:
        if getattr(response, "streaming", False) or not self.allows(request):
            return
        if db is None and cache is None:
            ours = f"app;dur={app * 1000.0:.3f}"
        else:
            ours = value(app, db, cache)
        store = getattr(response.headers, "_store", None)
        if type(store) is dict:
            # Django's ResponseHeaders, written as its __setitem__ would (the value is ASCII we
            # made; a view's own value was checked when the view set it).
            present = store.get("server-timing")
            store["server-timing"] = (HEADER, ours if present is None else f"{present[1]}, {ours}")
        else:
            present = response.headers.get(HEADER)
            response.headers[HEADER] = f"{present}, {ours}" if present else ours


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
    return _http.ServerTiming(_decider(allowed, proxies), bool(proxies))


def build() -> ServerTiming | None:
    """The features' ``server_timing`` (app, db and cache entries), or None when off or app alone."""
    if not options.server_timing():
        return None
    allowed, proxies = allowed_networks()  # validated here too: a bad value fails at once
    return ServerTiming(allowed, proxies) if _accounting() else None
