"""Pure-Python twin of ``_http_c.pyx``: the per-request recording of the HTTP middlewares.

Keep the two files in step (same names, same behaviour); the test suite runs
against both. A recorder is built once per middleware instance from a
``Metrics`` object whose metrics have upstream's label names. It resolves the
cells of each (method, transport), (view) and (status, view, charset)
combination the first time it sees it and afterwards only increments them.
Every entry point logs and swallows its own failures: instrumentation never
breaks a request.
"""

from __future__ import annotations

import logging
import re
from time import perf_counter
from typing import Any

from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

__all__ = [
    "INVALID_METHOD",
    "UNNAMED_VIEW",
    "VALID_METHODS",
    "AfterRecorder",
    "BeforeRecorder",
    "body_length",
    "now",
    "sanitize_method",
]

logger = logging.getLogger("django_prometheus.middleware")

VALID_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH"))
INVALID_METHOD = "<invalid method>"
UNNAMED_VIEW = "<unnamed view>"
# Interned label values: a method string from the request maps to one of these.
_METHODS = {m: m for m in VALID_METHODS}
# Django's own pattern (django.http.response), so the label equals ``response.charset``.
_CHARSET_RE = re.compile(r";\s*charset=(?P<charset>[^\s;]+)", re.I)
_CONTENT_TYPE_CACHE_MAX = 256
_MISSING: Any = object()

# How a response type exposes what process_response reads, decided once per type.
_CONTENT_FAST = 1  # HttpResponse's own ``content``: the sum of the chunk lengths, no join
_CONTENT_NONE = 2  # Django's streaming responses: no ``content``
_CONTENT_GENERIC = 3  # anything else: ``len(response.content)`` if it has one

now = perf_counter


def sanitize_method(method: object) -> str:
    """``method`` if it is one of the nine HTTP methods, else ``<invalid method>``."""
    return _METHODS.get(method, INVALID_METHOD) if isinstance(method, str) else INVALID_METHOD


def body_length(value: object) -> int | None:
    """The request body size from a ``Content-Length`` value: absent is 0, malformed or negative is None."""
    if not value:
        return 0
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


def _unlabelled(metric: Any) -> Any:
    # Our facades keep the one cell of an unlabelled metric in ``_cell``; any
    # other prometheus_client metric is its own "cell".
    cell = getattr(metric, "_cell", None)
    return metric if cell is None else cell


def _log_failure(where: str) -> None:
    logger.exception("django_prometheus: could not record the HTTP metrics of %s", where)


class BeforeRecorder:
    """What ``PrometheusBeforeMiddleware`` records: requests, responses, latency including middlewares."""

    __slots__ = ("_latency", "_requests", "_responses", "_unknown")

    def __init__(self, metrics: Any) -> None:
        self._requests = _unlabelled(metrics.requests_total)
        self._responses = _unlabelled(metrics.responses_total)
        self._latency = _unlabelled(metrics.requests_latency_before)
        self._unknown = _unlabelled(metrics.requests_unknown_latency_before)

    def on_request(self, request: Any) -> float | None:
        """Count the request; the start time, or None if recording failed."""
        try:
            self._requests.inc()
        except Exception:
            _log_failure("a request")
            return None
        return perf_counter()

    def on_response(self, request: Any, response: Any, started: float | None) -> None:
        end = perf_counter()
        try:
            self._responses.inc()
            if started is None:
                self._unknown.inc()
            else:
                self._latency.observe(end - started)
        except Exception:
            _log_failure("a response")


class _Kind:
    """The cells of one (sanitised method, transport) combination, and its sub-caches."""

    __slots__ = ("by_method", "by_transport", "method", "responses", "transport", "views")

    def __init__(self, owner: AfterRecorder, method: str, transport: str) -> None:
        self.method = method
        self.transport = transport
        self.by_method = owner._m.requests_by_method.labels(method)
        self.by_transport = owner._m.requests_by_transport.labels(transport)
        self.views: dict[str, Any] = {}  # view -> requests_by_view_transport_method cell
        self.responses: dict[tuple, _Outcome] = {}  # (status, view, charset) -> cells


class _Outcome:
    """The cells one response increments, for one (method, status, view, charset)."""

    __slots__ = ("by_charset", "by_status", "by_status_view_method", "latency")

    def __init__(self, owner: AfterRecorder, method: str, status: object, view: str, charset: object) -> None:
        m = owner._m
        status_label = str(status)
        self.by_status = m.responses_by_status.labels(status_label)
        self.by_status_view_method = m.responses_by_status_view_method.labels(status_label, view, method)
        self.by_charset = None if charset is _MISSING else m.responses_by_charset.labels(str(charset))
        self.latency = m.requests_latency_by_view_method.labels(view, method)


class AfterRecorder:
    """What ``PrometheusAfterMiddleware`` records, with every label combination resolved once."""

    __slots__ = (
        "_ajax",
        "_content_types",
        "_exc_types",
        "_exc_views",
        "_http",
        "_https",
        "_m",
        "_request_body",
        "_response_body",
        "_streaming",
        "_templates",
        "_types",
        "_unknown",
    )

    def __init__(self, metrics: Any) -> None:
        self._m = metrics
        self._ajax = _unlabelled(metrics.requests_ajax)
        self._request_body = _unlabelled(metrics.requests_body_bytes)
        self._response_body = _unlabelled(metrics.responses_body_bytes)
        self._streaming = _unlabelled(metrics.responses_streaming)
        self._unknown = _unlabelled(metrics.requests_unknown_latency)
        self._http: dict[str, _Kind] = {}  # sanitised method -> kind, one dict per transport
        self._https: dict[str, _Kind] = {}
        self._types: dict[type, tuple[bool, int]] = {}
        self._content_types: dict[str, object] = {}
        self._templates: dict[str, Any] = {}
        self._exc_types: dict[str, Any] = {}
        self._exc_views: dict[str, Any] = {}

    # -- request ---------------------------------------------------------------------------------

    def _kind(self, request: Any) -> _Kind:
        method = request.method
        method = _METHODS.get(method, INVALID_METHOD) if isinstance(method, str) else INVALID_METHOD
        kinds = self._https if request.is_secure() else self._http
        kind = kinds.get(method)
        if kind is None:
            kind = kinds.setdefault(method, _Kind(self, method, "https" if kinds is self._https else "http"))
        return kind

    def on_request(self, request: Any) -> float | None:
        """Count the request and remember its kind on it; the start time, or None on failure."""
        try:
            kind = self._kind(request)
            request._prometheus_kind = kind
            kind.by_method.inc()
            kind.by_transport.inc()
            meta = request.META
            if meta.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
                self._ajax.inc()
            size = body_length(meta.get("CONTENT_LENGTH"))
            if size is not None:
                self._request_body.observe(size)
        except Exception:
            _log_failure("a request")
            return None
        return perf_counter()

    # -- view ------------------------------------------------------------------------------------

    def on_view(
        self, request: Any, view_func: Any = None, view_args: Any = None, view_kwargs: Any = None
    ) -> None:
        """``process_view``: count the request by (view, transport, method)."""
        try:
            kind = request.__dict__.get("_prometheus_kind") or self._kind(request)
            match = request.resolver_match
            view = (match.view_name if match is not None else None) or UNNAMED_VIEW
            cell = kind.views.get(view)
            if cell is None:
                cell = kind.views.setdefault(
                    view, self._m.requests_by_view_transport_method.labels(view, kind.transport, kind.method)
                )
            cell.inc()
        except Exception:
            _log_failure("a view")

    # -- response --------------------------------------------------------------------------------

    def _type_info(self, cls: type) -> tuple[bool, int]:
        info = self._types.get(cls)
        if info is None:
            fast_charset = issubclass(cls, HttpResponseBase) and cls.charset is HttpResponseBase.charset
            if issubclass(cls, HttpResponse) and cls.content is HttpResponse.content:
                content = _CONTENT_FAST
            elif issubclass(cls, StreamingHttpResponse) and cls.content is StreamingHttpResponse.content:
                content = _CONTENT_NONE
            else:
                content = _CONTENT_GENERIC
            info = self._types.setdefault(cls, (fast_charset, content))
        return info

    def _charset_of(self, response: Any, fast: bool) -> object:
        """``response.charset`` (``_MISSING`` if it has none), without the regex when we can."""
        if fast:
            charset = response._charset
            if charset is not None:
                return charset
            store = getattr(response.headers, "_store", None)
            if store is not None:
                entry = store.get("content-type")
                content_type = entry[1] if entry is not None else None
                if not content_type:
                    return settings.DEFAULT_CHARSET
                charset = self._content_types.get(content_type, _MISSING)
                if charset is _MISSING:
                    matched = _CHARSET_RE.search(content_type)
                    charset = matched["charset"].replace('"', "") if matched else None
                    if len(self._content_types) < _CONTENT_TYPE_CACHE_MAX:
                        self._content_types[content_type] = charset
                return settings.DEFAULT_CHARSET if charset is None else charset
        return getattr(response, "charset", _MISSING)

    def on_response(self, request: Any, response: Any, started: float | None) -> None:
        end = perf_counter()
        try:
            kind = request.__dict__.get("_prometheus_kind") or self._kind(request)
            match = getattr(request, "resolver_match", None)
            view = match.view_name if match is not None else None
            if view is None:
                view = UNNAMED_VIEW
            status = response.status_code
            fast_charset, content = self._type_info(type(response))
            charset = self._charset_of(response, fast_charset)
            key = (status, view, charset)
            outcome = kind.responses.get(key)
            if outcome is None:
                outcome = kind.responses.setdefault(key, _Outcome(self, kind.method, status, view, charset))
            outcome.by_status.inc()
            outcome.by_status_view_method.inc()
            if outcome.by_charset is not None:
                outcome.by_charset.inc()
            if getattr(response, "streaming", False):
                self._streaming.inc()
            if content == _CONTENT_FAST:
                self._response_body.observe(sum(map(len, response._container)))
            elif content == _CONTENT_GENERIC and hasattr(response, "content"):
                self._response_body.observe(len(response.content))
            if started is None:
                self._unknown.inc()
            else:
                outcome.latency.observe(end - started)
        except Exception:
            _log_failure("a response")

    # -- rarer hooks -----------------------------------------------------------------------------

    def on_template_response(self, request: Any, response: Any) -> Any:
        try:
            if hasattr(response, "template_name"):
                name = str(response.template_name)
                cell = self._templates.get(name)
                if cell is None:
                    cell = self._templates.setdefault(name, self._m.responses_by_templatename.labels(name))
                cell.inc()
        except Exception:
            _log_failure("a template response")
        return response

    def on_exception(self, request: Any, exception: BaseException) -> None:
        # The latency of a failed request is observed once, by on_response (fix 5).
        try:
            name = type(exception).__name__
            cell = self._exc_types.get(name)
            if cell is None:
                cell = self._exc_types.setdefault(name, self._m.exceptions_by_type.labels(name))
            cell.inc()
            match = getattr(request, "resolver_match", None)
            if match is not None:
                view = match.view_name or UNNAMED_VIEW
                cell = self._exc_views.get(view)
                if cell is None:
                    cell = self._exc_views.setdefault(view, self._m.exceptions_by_view.labels(view))
                cell.inc()
        except Exception:
            _log_failure("an exception")
