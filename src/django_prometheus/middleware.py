"""HTTP metrics: ``PrometheusBeforeMiddleware`` first in ``MIDDLEWARE``, ``PrometheusAfterMiddleware`` last.

Both are sync- and async-capable. On the default path the core
(``_core/_http``) does everything: the middlewares' ``__call__`` and the
per-request recorders, which resolve the cells of a label combination once and
then only increment them; under ASGI they run inline on the event loop, with no
``sync_to_async`` hop. A subclass that overrides ``label_metric`` or a hook, or
a ``Metrics`` subclass that adds label names, gets upstream's hook-by-hook path
instead (slower; under ASGI its hooks run in a thread, as user code may touch
the database), with the same label rules and the deliberate fixes (docs/install.md, What differs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest

from django_prometheus import conf, servertiming
from django_prometheus._core import _http
from django_prometheus.http import options
from django_prometheus.http.cells import HttpCells
from django_prometheus.http.metrics import BEFORE, SPECS, Metrics, has_default_labels, rules
from django_prometheus.metrics import Counter, Histogram  # noqa: F401  (importable from here, as before)
from django_prometheus.utils import Time, TimeSince

__all__ = ["Metrics", "PrometheusAfterMiddleware", "PrometheusBeforeMiddleware"]

# The core's own failure log (the logger and message its recorders use).
_log_failure = _http.log_failure


def _features_call(method: Any, *args: Any) -> Any:
    # The opt-in features on the extension path (they log their own failures; this is the backstop).
    try:
        return method(*args)
    except Exception:
        _log_failure("a request (opt-in features)")
        return None


def _hook_excluded(request: HttpRequest) -> bool:
    # The After middleware's hooks on the extension path: a request excluded by path (a view
    # exclusion comes too late for the hooks, which counted the request on its way in).
    features = _http.get_features()
    return features is not None and bool(_features_call(features.path_excluded, request))


class _Features:
    """The opt-in features around one request on the extension path (``_http.set_features``' protocol)."""

    __slots__ = ("features", "outer", "request", "state")

    def __init__(self, request: HttpRequest, outer: bool) -> None:
        self.features = features = _http.get_features()
        self.request, self.outer = request, outer
        self.state = None if features is None else _features_call(features.begin, request, outer)

    @property
    def skip(self) -> bool:
        return self.state is _http.SKIP

    def abort(self) -> None:
        if self.state is not None:
            _features_call(self.features.abort, self.request, self.state, self.outer)

    def end(self, response: Any) -> None:
        if self.state is not None:
            _features_call(self.features.end, self.request, response, self.state, self.outer)


class _PrometheusMiddleware(_http.Middleware):
    """What both middlewares share: construction, mode selection and upstream's helper methods."""

    sync_capable = True
    async_capable = True
    #: The ``Metrics`` class whose instance this middleware records into; set it on a subclass
    #: (with ``label_metric``) to record into a ``Metrics`` subclass with extra label names.
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
    _ignored_exceptions: tuple[type[BaseException], ...] = ()

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        if get_response is None:
            raise ValueError("get_response must be provided.")
        conf.refuse_if_invalid()  # the message manage.py check gives (a serving process does not start)
        self.get_response = get_response
        metrics = self.metrics_cls.get_instance()
        use_buckets = getattr(metrics, "_use_latency_buckets", None)
        if use_buckets is not None:
            use_buckets(conf.latency_buckets())
        use_body_buckets = getattr(metrics, "_use_body_buckets", None)
        if use_body_buckets is not None:
            use_body_buckets(options.total_bytes_buckets())
        use_disabled = getattr(metrics, "_use_disabled", None)
        if use_disabled is not None:
            use_disabled(options.disabled_metrics())
        self.metrics = metrics
        self._rules = rules(metrics)  # recorded by the After middleware (``Spec.record``)
        self._ignored_exceptions = options.ignored_exceptions()  # PROMETHEUS_IGNORED_EXCEPTIONS
        self.async_mode = iscoroutinefunction(get_response)
        default = self._is_default()
        self._recorder = self._make_recorder(HttpCells(metrics, self._METRICS)) if default else None
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
        return has_default_labels(self.metrics, self._METRICS)

    def _base(self) -> type:
        raise NotImplementedError

    def _make_recorder(self, cells: HttpCells) -> Any:
        raise NotImplementedError

    def _install_hooks(self, recorder: Any) -> None:
        pass

    def label_metric(self, metric: Any, request: HttpRequest, response: Any = None, **labels: str) -> Any:
        """The metric or child to increment for this request.

        The extension point: override it (reading ``metric._name``) to supply the
        values of label names a ``Metrics`` subclass added.
        """
        return metric.labels(**labels) if labels else metric

    # The default path is the core's ``__call__``/``__acall__``; these run the hooks instead.
    # With the opt-in features on, they run around the hooks (``_Features``): a path exclusion
    # skips the hooks, a view exclusion only the features (the hooks counted the request
    # before its view was known).
    def _call_hooks(self, request: HttpRequest) -> Any:
        # Upstream's MiddlewareMixin.__call__; our own hooks log their failures.
        features = _Features(request, self._outer)
        if features.skip:
            return self.get_response(request)
        try:
            response = self.process_request(request)  # type: ignore[attr-defined]
            response = response or self.get_response(request)
            response = self.process_response(request, response)  # type: ignore[attr-defined]
        except BaseException:
            features.abort()
            raise
        features.end(response)
        return response

    async def _acall_hooks(self, request: HttpRequest) -> Any:
        # Overridden hooks are user code that may touch the database: run them in a thread, as upstream.
        features = _Features(request, self._outer)
        if features.skip:
            return await self.get_response(request)
        try:
            response = await sync_to_async(self.process_request, thread_sensitive=True)(request)  # type: ignore[attr-defined]
            response = response or await self.get_response(request)
            response = await sync_to_async(self.process_response, thread_sensitive=True)(request, response)  # type: ignore[attr-defined]
        except BaseException:
            features.abort()
            raise
        features.end(response)
        return response

    _outer = False


class PrometheusBeforeMiddleware(_PrometheusMiddleware):
    """Monitoring middleware that should run before other middlewares."""

    _METRICS = BEFORE
    _outer = True
    _timing_writer: Any = None

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        if self._recorder is None:  # the hook path writes the Server-Timing app entry itself
            self._timing_writer = servertiming.core_writer()

    def _base(self) -> type:
        return PrometheusBeforeMiddleware

    def _make_recorder(self, cells: HttpCells) -> Any:
        return _http.BeforeRecorder(cells)

    def process_request(self, request: HttpRequest) -> None:
        """Upstream's hook (the extension path): count the request and remember when it came."""
        try:
            self.label_metric(self.metrics.requests_total, request).inc()
        except Exception:
            _log_failure("a request")
        request.prometheus_before_middleware_event = Time()  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: Any) -> Any:
        """Upstream's hook (the extension path): count the response and observe the latency."""
        try:
            metrics = self.metrics
            self.label_metric(metrics.responses_total, request, response).inc()
            if hasattr(request, "prometheus_before_middleware_event"):
                seconds = TimeSince(request.prometheus_before_middleware_event)
                self.label_metric(metrics.requests_latency_before, request, response).observe(seconds)
                if self._timing_writer is not None:  # PROMETHEUS_SERVER_TIMING's app entry
                    self._timing_writer(request, response, seconds)
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
    _METRICS = tuple(a for a in SPECS if a not in BEFORE)

    def _base(self) -> type:
        return PrometheusAfterMiddleware

    def _make_recorder(self, cells: HttpCells) -> Any:
        return _http.AfterRecorder(cells)

    def _install_hooks(self, recorder: Any) -> None:
        # Instance attributes shadow the upstream-compatible methods below: Django
        # calls the recorder directly (sync), or the core's native coroutine methods (async).
        # Django runs exception middleware synchronously in both modes.
        self.process_exception = recorder.on_exception
        if self.async_mode:
            view, template = self._async_hooks()
            self.process_view = view if iscoroutinefunction(view) else markcoroutinefunction(view)
            self.process_template_response = template
        else:
            self.process_view = recorder.on_view
            self.process_template_response = recorder.on_template_response

    # -- upstream's helpers and hooks (the extension path), on the core's label rules -------------

    def _transport(self, request: HttpRequest) -> str:
        """The ``transport`` label (``_http.transport``); overriding it selects the hook path."""
        return _http.transport(request)

    def _method(self, request: HttpRequest) -> str:
        """The ``method`` label (``_http.sanitize_method``); overriding it selects the hook path."""
        return _http.sanitize_method(request.method)

    def _get_view_name(self, request: HttpRequest) -> str:
        """The ``view`` label of responses and latency (``_http.view_name``)."""
        return _http.view_name(request)

    def process_request(self, request: HttpRequest) -> None:
        """Upstream's hook (the extension path): method, transport, AJAX and body size."""
        try:
            metrics = self.metrics
            method, transport = self._method(request), self._transport(request)
            self.label_metric(metrics.requests_by_method, request, method=method).inc()
            self.label_metric(metrics.requests_by_transport, request, transport=transport).inc()
            if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
                self.label_metric(metrics.requests_ajax, request).inc()
            size = _http.body_length(request.META.get("CONTENT_LENGTH"))
            # docs/install.md, What differs, 3: a malformed, negative or absurd Content-Length is ignored
            if size is not None:
                self.label_metric(metrics.requests_body_bytes, request).observe(size)
        except Exception:
            _log_failure("a request")
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_view(self, request: HttpRequest, view_func: Any, *view_args: Any, **view_kwargs: Any) -> None:
        """Upstream's hook (the extension path): count by view, transport and method."""
        try:
            view = _http.hook_view_name(request)
            if view is not None and not _hook_excluded(request):
                self.label_metric(
                    self.metrics.requests_by_view_transport_method,
                    request,
                    view=view,
                    transport=self._transport(request),
                    method=self._method(request),
                ).inc()
        except Exception:
            _log_failure("a view")

    def process_template_response(self, request: HttpRequest, response: Any) -> Any:
        """Upstream's hook (the extension path): count by template name."""
        try:
            name = _http.template_name(response)
            if name is not None and not _hook_excluded(request):
                self.label_metric(
                    self.metrics.responses_by_templatename, request, response=response, templatename=name
                ).inc()
        except Exception:
            _log_failure("a template response")
        return response

    def process_response(self, request: HttpRequest, response: Any) -> Any:
        """Upstream's hook (the extension path): status, view, charset, body size, latency."""
        try:
            self._record_response(request, response)
        except Exception:
            _log_failure("a response")
        for record, metric in self._rules:  # the families beyond upstream's (``Spec.record``)
            try:
                record(metric, request, response)
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
        charset = _http.charset(response)
        if charset is not None:
            label(metrics.responses_by_charset, request, response, charset=charset).inc()
        if getattr(response, "streaming", False):
            label(metrics.responses_streaming, request, response).inc()
        size = _http.response_body_size(response)
        if size is not None:
            label(metrics.responses_body_bytes, request, response).observe(size)
        if hasattr(request, "prometheus_after_middleware_event"):
            # docs/install.md, What differs, 4: the sanitised method, like every other method label
            label(
                metrics.requests_latency_by_view_method, request, response, view=name, method=method
            ).observe(TimeSince(request.prometheus_after_middleware_event))
        else:
            label(metrics.requests_unknown_latency, request, response).inc()

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        """Upstream's hook (the extension path): count by exception type and view."""
        # docs/install.md, What differs, 5: no latency here; process_response observes the failed
        # request once.
        try:
            ignored = self._ignored_exceptions
            if ignored and isinstance(exception, ignored):
                return
            if _hook_excluded(request):
                return
            self.label_metric(self.metrics.exceptions_by_type, request, type=type(exception).__name__).inc()
            view = _http.hook_view_name(request)
            if view is not None:
                self.label_metric(self.metrics.exceptions_by_view, request, view=view).inc()
        except Exception:
            _log_failure("an exception")
