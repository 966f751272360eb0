"""HTTP metrics: ``PrometheusBeforeMiddleware`` first in ``MIDDLEWARE``, ``PrometheusAfterMiddleware`` last.

Both are sync- and async-capable. The default path hands each request to a
recorder from the core (``_core/_http``) that resolves the cells of a label
combination once and afterwards only increments them; under ASGI it runs inline
on the event loop, with no ``sync_to_async`` hop. A subclass that overrides
``label_metric`` or a hook, or a ``Metrics`` subclass that adds label names,
gets upstream's hook-by-hook path instead (slower, and under ASGI its hooks run
in a thread, as user code may touch the database), with the deliberate fixes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest
from prometheus_client import REGISTRY

from django_prometheus._core import _http
from django_prometheus.conf import DEFAULT_LATENCY_BUCKETS
from django_prometheus.metrics import Counter, Histogram
from django_prometheus.utils import PowersOf, Time, TimeSince

__all__ = ["Metrics", "PrometheusAfterMiddleware", "PrometheusBeforeMiddleware"]

logger = logging.getLogger(__name__)

_INVALID_METHOD = _http.INVALID_METHOD
_UNNAMED_VIEW = _http.UNNAMED_VIEW
# Re-entrant: a subclass' __init__ may itself ask for an instance.
_INSTANCE_LOCK = threading.RLock()

# attribute -> (class, declared name, documentation, label names); upstream's, in upstream's order.
_SPECS: dict[str, tuple[type, str, str, tuple[str, ...]]] = {
    "requests_total": (
        Counter,
        "django_http_requests_before_middlewares_total",
        "Total count of requests before middlewares run.",
        (),
    ),
    "responses_total": (
        Counter,
        "django_http_responses_before_middlewares_total",
        "Total count of responses before middlewares run.",
        (),
    ),
    "requests_latency_before": (
        Histogram,
        "django_http_requests_latency_including_middlewares_seconds",
        "Histogram of requests processing time (including middleware processing time).",
        (),
    ),
    "requests_unknown_latency_before": (
        Counter,
        "django_http_requests_unknown_latency_including_middlewares_total",
        "Count of requests for which the latency was unknown (when computing "
        "django_http_requests_latency_including_middlewares_seconds).",
        (),
    ),
    "requests_latency_by_view_method": (
        Histogram,
        "django_http_requests_latency_seconds_by_view_method",
        "Histogram of request processing time labelled by view.",
        ("view", "method"),
    ),
    "requests_unknown_latency": (
        Counter,
        "django_http_requests_unknown_latency_total",
        "Count of requests for which the latency was unknown.",
        (),
    ),
    "requests_ajax": (Counter, "django_http_ajax_requests_total", "Count of AJAX requests.", ()),
    "requests_by_method": (
        Counter,
        "django_http_requests_total_by_method",
        "Count of requests by method.",
        ("method",),
    ),
    "requests_by_transport": (
        Counter,
        "django_http_requests_total_by_transport",
        "Count of requests by transport.",
        ("transport",),
    ),
    "requests_by_view_transport_method": (
        Counter,
        "django_http_requests_total_by_view_transport_method",
        "Count of requests by view, transport, method.",
        ("view", "transport", "method"),
    ),
    "requests_body_bytes": (
        Histogram,
        "django_http_requests_body_total_bytes",
        "Histogram of requests by body size.",
        (),
    ),
    "responses_by_templatename": (
        Counter,
        "django_http_responses_total_by_templatename",
        "Count of responses by template name.",
        ("templatename",),
    ),
    "responses_by_status": (
        Counter,
        "django_http_responses_total_by_status",
        "Count of responses by status.",
        ("status",),
    ),
    "responses_by_status_view_method": (
        Counter,
        "django_http_responses_total_by_status_view_method",
        "Count of responses by status, view, method.",
        ("status", "view", "method"),
    ),
    "responses_body_bytes": (
        Histogram,
        "django_http_responses_body_total_bytes",
        "Histogram of responses by body size.",
        (),
    ),
    "responses_by_charset": (
        Counter,
        "django_http_responses_total_by_charset",
        "Count of responses by charset.",
        ("charset",),
    ),
    "responses_streaming": (
        Counter,
        "django_http_responses_streaming_total",
        "Count of streaming responses.",
        (),
    ),
    "exceptions_by_type": (
        Counter,
        "django_http_exceptions_total_by_type",
        "Count of exceptions by object type.",
        ("type",),
    ),
    "exceptions_by_view": (
        Counter,
        "django_http_exceptions_total_by_view",
        "Count of exceptions by view.",
        ("view",),
    ),
}
_LATENCY = ("requests_latency_before", "requests_latency_by_view_method")
_BODY = ("requests_body_bytes", "responses_body_bytes")
_BEFORE_METRICS = (
    "requests_total",
    "responses_total",
    "requests_latency_before",
    "requests_unknown_latency_before",
)


def _latency_buckets() -> tuple[float, ...]:
    return tuple(getattr(settings, "PROMETHEUS_LATENCY_BUCKETS", DEFAULT_LATENCY_BUCKETS))


class Metrics:
    """The HTTP metric families, one attribute each; one shared instance per class (``get_instance()``)."""

    _instance: Metrics | None = None

    @classmethod
    def get_instance(cls) -> Metrics:
        if not cls._instance:
            # Threads building their first middlewares at once must not both register.
            with _INSTANCE_LOCK:
                if not cls._instance:
                    cls._instance = cls()
        return cls._instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.register()

    def register_metric(
        self, metric_cls: type, name: str, documentation: str, labelnames: Any = (), **kwargs: Any
    ) -> Any:
        return metric_cls(name, documentation, labelnames=labelnames, **kwargs)

    def _register_one(self, attr: str, buckets: tuple[float, ...]) -> Any:
        metric_cls, name, documentation, labelnames = _SPECS[attr]
        kwargs: dict[str, Any] = {"namespace": getattr(settings, "PROMETHEUS_METRIC_NAMESPACE", "")}
        if attr in _LATENCY:
            kwargs["buckets"] = buckets
        elif attr in _BODY:
            kwargs["buckets"] = PowersOf(2, 30)
        if labelnames:
            # A fresh list: users' register_metric overrides extend it in place.
            metric = self.register_metric(metric_cls, name, documentation, list(labelnames), **kwargs)
        else:
            metric = self.register_metric(metric_cls, name, documentation, **kwargs)
        setattr(self, attr, metric)
        return metric

    def register(self) -> None:
        buckets = _latency_buckets()
        self._latency_buckets = buckets
        for attr in _SPECS:
            self._register_one(attr, buckets)

    def _use_latency_buckets(self, buckets: tuple[float, ...]) -> None:
        """Re-create the latency histograms if ``PROMETHEUS_LATENCY_BUCKETS`` changed (override_settings)."""
        if getattr(self, "_latency_buckets", buckets) == buckets:
            return
        self._latency_buckets = buckets
        for attr in _LATENCY:
            old = getattr(self, attr, None)
            if old is not None:
                try:
                    REGISTRY.unregister(old)
                except KeyError:  # the user unregistered it, or registered it elsewhere
                    pass
            self._register_one(attr, buckets)


def _log_failure(what: str) -> None:
    logger.exception("django_prometheus: could not record the HTTP metrics of %s", what)


class _PrometheusMiddleware:
    """What both middlewares share: construction, mode selection and upstream's helper methods."""

    sync_capable = True
    async_capable = True
    metrics_cls: type[Metrics] = Metrics

    # Overriding any of these (or adding label names) selects the hook-by-hook path.
    _OVERRIDABLE = (
        "__call__",
        "__acall__",
        "label_metric",
        "process_request",
        "process_response",
    )
    _METRICS: tuple[str, ...] = ()

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        if get_response is None:
            raise ValueError("get_response must be provided.")
        self.get_response = get_response
        metrics = self.metrics_cls.get_instance()
        use_buckets = getattr(metrics, "_use_latency_buckets", None)
        if use_buckets is not None:
            use_buckets(_latency_buckets())
        self.metrics = metrics
        self.async_mode = iscoroutinefunction(get_response)
        self._recorder = self._make_recorder() if self._is_default() else None
        if self.async_mode:
            markcoroutinefunction(self)
        if self._recorder is not None:
            self._install_hooks(self._recorder)

    def __repr__(self) -> str:
        name = getattr(self.get_response, "__qualname__", type(self.get_response).__name__)
        return f"<{type(self).__qualname__} get_response={name}>"

    def _is_default(self) -> bool:
        cls, base = type(self), self._base()
        if any(getattr(cls, name) is not getattr(base, name) for name in self._OVERRIDABLE):
            return False
        for attr in self._METRICS:
            labelnames = getattr(getattr(self.metrics, attr, None), "_labelnames", None)
            if labelnames is None or tuple(labelnames) != _SPECS[attr][3]:
                return False
        return True

    def _base(self) -> type:
        raise NotImplementedError

    def _make_recorder(self) -> Any:
        raise NotImplementedError

    def _install_hooks(self, recorder: Any) -> None:
        pass

    def label_metric(self, metric: Any, request: HttpRequest, response: Any = None, **labels: str) -> Any:
        """The metric or child to increment for this request; override it to supply extra label values."""
        return metric.labels(**labels) if labels else metric

    # The default path: the core recorder does the work of both middlewares' hooks.
    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        recorder = self._recorder
        if recorder is None:
            return self._call_hooks(request)
        started = recorder.on_request(request)
        response = self.get_response(request)
        recorder.on_response(request, response, started)
        return response

    async def __acall__(self, request: HttpRequest) -> Any:
        recorder = self._recorder
        if recorder is None:
            return await self._acall_hooks(request)
        started = recorder.on_request(request)
        response = await self.get_response(request)
        recorder.on_response(request, response, started)
        return response

    def _call_hooks(self, request: HttpRequest) -> Any:
        # Upstream's MiddlewareMixin.__call__; our own hooks log their failures.
        response = self.process_request(request)  # type: ignore[attr-defined]
        response = response or self.get_response(request)
        return self.process_response(request, response)  # type: ignore[attr-defined]

    async def _acall_hooks(self, request: HttpRequest) -> Any:
        # Overridden hooks are user code that may touch the database: run them in a thread, as upstream.
        response = await sync_to_async(self.process_request, thread_sensitive=True)(request)  # type: ignore[attr-defined]
        response = response or await self.get_response(request)
        return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)  # type: ignore[attr-defined]


class PrometheusBeforeMiddleware(_PrometheusMiddleware):
    """Monitoring middleware that should run before other middlewares."""

    _METRICS = _BEFORE_METRICS

    def _base(self) -> type:
        return PrometheusBeforeMiddleware

    def _make_recorder(self) -> Any:
        return _http.BeforeRecorder(self.metrics)

    def process_request(self, request: HttpRequest) -> None:
        try:
            self.label_metric(self.metrics.requests_total, request).inc()
        except Exception:
            _log_failure("a request")
        request.prometheus_before_middleware_event = Time()  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: Any) -> Any:
        try:
            metrics = self.metrics
            self.label_metric(metrics.responses_total, request, response).inc()
            if hasattr(request, "prometheus_before_middleware_event"):
                self.label_metric(metrics.requests_latency_before, request, response).observe(
                    TimeSince(request.prometheus_before_middleware_event)
                )
            else:
                self.label_metric(metrics.requests_unknown_latency_before, request, response).inc()
        except Exception:
            _log_failure("a response")
        return response


class PrometheusAfterMiddleware(_PrometheusMiddleware):
    """Monitoring middleware that should run after other middlewares."""

    _OVERRIDABLE = (
        *_PrometheusMiddleware._OVERRIDABLE,
        "process_view",
        "process_template_response",
        "process_exception",
        "_transport",
        "_method",
        "_get_view_name",
    )
    _METRICS = tuple(a for a in _SPECS if a not in _BEFORE_METRICS)

    def _base(self) -> type:
        return PrometheusAfterMiddleware

    def _make_recorder(self) -> Any:
        return _http.AfterRecorder(self.metrics)

    def _install_hooks(self, recorder: Any) -> None:
        # Instance attributes shadow the upstream-compatible methods below: Django
        # calls the recorder directly (sync), or a native coroutine method (async).
        # Django runs exception middleware synchronously in both modes.
        self.process_exception = recorder.on_exception
        if self.async_mode:
            self.process_view = self._process_view_async
            self.process_template_response = self._process_template_response_async
        else:
            self.process_view = recorder.on_view
            self.process_template_response = recorder.on_template_response

    async def _process_view_async(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> None:
        self._recorder.on_view(request)

    async def _process_template_response_async(self, request: HttpRequest, response: Any) -> Any:
        return self._recorder.on_template_response(request, response)

    # -- upstream's helpers and hooks (the extension path) ---------------------------------------

    def _transport(self, request: HttpRequest) -> str:
        return "https" if request.is_secure() else "http"

    def _method(self, request: HttpRequest) -> str:
        return _http.sanitize_method(request.method)

    def _get_view_name(self, request: HttpRequest) -> str:
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name is not None:
            return match.view_name
        return _UNNAMED_VIEW

    def process_request(self, request: HttpRequest) -> None:
        try:
            metrics = self.metrics
            transport = self._transport(request)
            method = self._method(request)
            self.label_metric(metrics.requests_by_method, request, method=method).inc()
            self.label_metric(metrics.requests_by_transport, request, transport=transport).inc()
            if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
                self.label_metric(metrics.requests_ajax, request).inc()
            size = _http.body_length(request.META.get("CONTENT_LENGTH"))
            if size is not None:  # fix 3: a malformed or negative Content-Length is ignored
                self.label_metric(metrics.requests_body_bytes, request).observe(size)
        except Exception:
            _log_failure("a request")
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_view(self, request: HttpRequest, view_func: Any, *view_args: Any, **view_kwargs: Any) -> None:
        try:
            match = getattr(request, "resolver_match", None)
            if match is not None:
                self.label_metric(
                    self.metrics.requests_by_view_transport_method,
                    request,
                    view=match.view_name or _UNNAMED_VIEW,
                    transport=self._transport(request),
                    method=self._method(request),
                ).inc()
        except Exception:
            _log_failure("a view")

    def process_template_response(self, request: HttpRequest, response: Any) -> Any:
        try:
            if hasattr(response, "template_name"):
                self.label_metric(
                    self.metrics.responses_by_templatename,
                    request,
                    response=response,
                    templatename=str(response.template_name),
                ).inc()
        except Exception:
            _log_failure("a template response")
        return response

    def process_response(self, request: HttpRequest, response: Any) -> Any:
        try:
            self._record_response(request, response)
        except Exception:
            _log_failure("a response")
        return response

    def _record_response(self, request: HttpRequest, response: Any) -> None:
        metrics, label = self.metrics, self.label_metric
        method = self._method(request)
        name = self._get_view_name(request)
        status = str(response.status_code)
        label(metrics.responses_by_status, request, response, status=status).inc()
        label(
            metrics.responses_by_status_view_method,
            request,
            response,
            status=status,
            view=name,
            method=method,
        ).inc()
        if hasattr(response, "charset"):
            label(metrics.responses_by_charset, request, response, charset=str(response.charset)).inc()
        if getattr(response, "streaming", False):
            label(metrics.responses_streaming, request, response).inc()
        if hasattr(response, "content"):
            label(metrics.responses_body_bytes, request, response).observe(len(response.content))
        if hasattr(request, "prometheus_after_middleware_event"):
            # fix 4: the sanitised method, like every other method label
            label(
                metrics.requests_latency_by_view_method, request, response, view=name, method=method
            ).observe(TimeSince(request.prometheus_after_middleware_event))
        else:
            label(metrics.requests_unknown_latency, request, response).inc()

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        # fix 5: no latency here; process_response observes the failed request once.
        try:
            self.label_metric(self.metrics.exceptions_by_type, request, type=type(exception).__name__).inc()
            match = getattr(request, "resolver_match", None)
            if match is not None:
                view = match.view_name or _UNNAMED_VIEW
                self.label_metric(self.metrics.exceptions_by_view, request, view=view).inc()
        except Exception:
            _log_failure("an exception")
