"""``HttpCells``: what the core's HTTP recorders receive, resolved from a ``Metrics`` object."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from django_prometheus import servertiming
from django_prometheus._core import _http
from django_prometheus.disabled import DisabledMetric
from django_prometheus.http import options
from django_prometheus.http.metrics import SPECS, rules

__all__ = ["HttpCells", "SettingsSnapshot", "connect_signals"]


class SettingsSnapshot(_http.Settings):
    """The two settings the recorders read per request, kept current from ``django.conf.settings``.

    Every attribute read on ``django.conf.settings`` runs ``LazyObject.__getattribute__``
    (a Python call); the core's ``Settings`` holds the values where the recorders
    read them cheaply, refreshed when Django reports a change (``setting_changed``:
    ``override_settings`` and the test ``settings`` fixture).
    """

    __slots__ = ()
    NAMES = ("DEFAULT_CHARSET", "SECURE_PROXY_SSL_HEADER")

    def __init__(self) -> None:
        super().__init__()
        self.refresh()

    def refresh(self, **kwargs: Any) -> None:
        if kwargs.get("setting", self.NAMES[0]) in self.NAMES and settings.configured:
            self.set(settings.DEFAULT_CHARSET, settings.SECURE_PROXY_SSL_HEADER)


_SNAPSHOT = SettingsSnapshot()


def connect_signals() -> None:
    """Keep the snapshot current when a test changes a setting (the app's ``ready()``; idempotent)."""
    setting_changed.connect(_SNAPSHOT.refresh, weak=False, dispatch_uid="django_prometheus.http.settings")


def _unlabelled(metric: Any) -> Any:
    # Our facades keep the one cell of an unlabelled metric in ``_cell``; any
    # other prometheus_client metric is its own "cell" (the core calls its inc()).
    cell = getattr(metric, "_cell", None)
    return metric if cell is None else cell


def _no_cell(*values: str) -> Any:
    return _http.NO_CELL


class HttpCells:
    """Per ``Metrics`` attribute: the cell of an unlabelled family, or ``labels`` of a labelled one.

    ``labels(*values)`` returns the cell of that label combination; the recorders
    call it once per combination and keep the cell. The class attributes are the
    Django objects the core's fast paths compare against (the core imports
    nothing from Django).
    """

    settings = _SNAPSHOT
    response_types = (HttpResponseBase, HttpResponse, StreamingHttpResponse)
    # The transport rule is ``request.is_secure()``. Where a request class keeps Django's
    # ``is_secure``/``scheme`` and this ``_get_scheme``, and SECURE_PROXY_SSL_HEADER is unset,
    # the answer is the scheme the server passed: (class, attribute, key, its _get_scheme).
    # WSGIRequest reads it from ``environ``, which Django also makes its ``META`` (one dict): the
    # recorders read META anyway, so they look there, and ask ``is_secure()`` if it is missing.
    secure_methods = (HttpRequest.is_secure, HttpRequest.scheme)
    scheme_sources = (
        (WSGIRequest, "META", "wsgi.url_scheme", WSGIRequest._get_scheme),
        (ASGIRequest, "scope", "scheme", ASGIRequest._get_scheme),
    )

    def __init__(self, metrics: Any, attrs: Any = SPECS) -> None:
        connect_signals()  # also when the app is not in INSTALLED_APPS (its ready() does it otherwise)
        _SNAPSHOT.refresh()
        for attr in attrs:
            metric = getattr(metrics, attr)
            if isinstance(metric, DisabledMetric):  # PROMETHEUS_DISABLED_METRICS: the core skips NO_CELL
                setattr(self, attr, _no_cell if SPECS[attr].labelnames else _http.NO_CELL)
            else:
                setattr(self, attr, metric.labels if SPECS[attr].labelnames else _unlabelled(metric))
        self.rules = rules(metrics)
        self.ignored_exceptions = options.ignored_exceptions()
        # PROMETHEUS_SERVER_TIMING's app entry, written by the Before recorder (None: off).
        self.server_timing = servertiming.core_writer() if "requests_latency_before" in attrs else None
