# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""Compiled per-request recording of the HTTP middlewares.

The pure-Python twin is ``_http_py.py``; keep both in step (same names, same
behaviour). The cells live in ``_cells_c`` (no ``.pxd``), so they are
incremented through their Python methods; what this module saves is the
interpreter work around them: label resolution, dict and attribute lookups,
the clock, and the charset and body-size reads of the response.
"""

import logging
import re

from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

cdef extern from *:
    """
    #if defined(_WIN32)
    #include <windows.h>
    static double dp_now(void) {
        LARGE_INTEGER f, c;
        QueryPerformanceFrequency(&f);
        QueryPerformanceCounter(&c);
        return (double)c.QuadPart / (double)f.QuadPart;
    }
    #else
    #include <time.h>
    /* CLOCK_MONOTONIC: what time.perf_counter() reads on Linux and macOS. */
    static double dp_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    #endif
    """
    double dp_now() nogil

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
cdef dict _METHODS = {m: m for m in VALID_METHODS}
cdef str _INVALID = INVALID_METHOD
cdef str _UNNAMED = UNNAMED_VIEW
_CHARSET_RE = re.compile(r";\s*charset=(?P<charset>[^\s;]+)", re.I)
cdef Py_ssize_t _CONTENT_TYPE_CACHE_MAX = 256
cdef object _MISSING = object()

cdef enum:
    _CONTENT_FAST = 1
    _CONTENT_NONE = 2
    _CONTENT_GENERIC = 3

cdef object _HttpResponse = HttpResponse
cdef object _HttpResponseBase = HttpResponseBase
cdef object _StreamingHttpResponse = StreamingHttpResponse
cdef object _base_charset = HttpResponseBase.charset
cdef object _response_content = HttpResponse.content
cdef object _streaming_content = StreamingHttpResponse.content
cdef object _settings = settings


def now():
    """Seconds on a monotonic clock (the one the recorders read)."""
    return dp_now()


cpdef str sanitize_method(method):
    """``method`` if it is one of the nine HTTP methods, else ``<invalid method>``."""
    if type(method) is not str:
        return _INVALID
    found = _METHODS.get(method)
    return _INVALID if found is None else <str>found


def body_length(value):
    """The request body size from a ``Content-Length`` value: absent is 0, malformed or negative is None."""
    return _body_length(value)


cdef object _body_length(object value):
    if not value:
        return 0
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


cdef object _unlabelled(object metric):
    cell = getattr(metric, "_cell", None)
    return metric if cell is None else cell


cdef void _log_failure(str where):
    logger.exception("django_prometheus: could not record the HTTP metrics of %s", where)


cdef class BeforeRecorder:
    """What ``PrometheusBeforeMiddleware`` records: requests, responses, latency including middlewares."""

    cdef object _requests, _responses, _latency, _unknown

    def __init__(self, metrics):
        self._requests = _unlabelled(metrics.requests_total)
        self._responses = _unlabelled(metrics.responses_total)
        self._latency = _unlabelled(metrics.requests_latency_before)
        self._unknown = _unlabelled(metrics.requests_unknown_latency_before)

    def on_request(self, request):
        """Count the request; the start time, or None if recording failed."""
        try:
            self._requests.inc()
        except Exception:
            _log_failure("a request")
            return None
        return dp_now()

    def on_response(self, request, response, started):
        cdef double end = dp_now()
        try:
            self._responses.inc()
            if started is None:
                self._unknown.inc()
            else:
                self._latency.observe(end - <double>started)
        except Exception:
            _log_failure("a response")


cdef class _Kind:
    """The cells of one (sanitised method, transport) combination, and its sub-caches."""

    cdef readonly str method, transport
    cdef object by_method, by_transport
    cdef dict views, responses

    def __init__(self, metrics, str method, str transport):
        self.method = method
        self.transport = transport
        self.by_method = metrics.requests_by_method.labels(method)
        self.by_transport = metrics.requests_by_transport.labels(transport)
        self.views = {}
        self.responses = {}


cdef class _Outcome:
    """The cells one response increments, for one (method, status, view, charset)."""

    cdef object by_status, by_status_view_method, by_charset, latency

    def __init__(self, m, str method, status, str view, charset):
        status_label = str(status)
        self.by_status = m.responses_by_status.labels(status_label)
        self.by_status_view_method = m.responses_by_status_view_method.labels(status_label, view, method)
        self.by_charset = None if charset is _MISSING else m.responses_by_charset.labels(str(charset))
        self.latency = m.requests_latency_by_view_method.labels(view, method)


cdef class AfterRecorder:
    """What ``PrometheusAfterMiddleware`` records, with every label combination resolved once."""

    cdef object _m
    cdef object _ajax, _request_body, _response_body, _streaming, _unknown
    cdef dict _http, _https, _types, _content_types, _templates, _exc_types, _exc_views

    def __init__(self, metrics):
        self._m = metrics
        self._ajax = _unlabelled(metrics.requests_ajax)
        self._request_body = _unlabelled(metrics.requests_body_bytes)
        self._response_body = _unlabelled(metrics.responses_body_bytes)
        self._streaming = _unlabelled(metrics.responses_streaming)
        self._unknown = _unlabelled(metrics.requests_unknown_latency)
        self._http = {}
        self._https = {}
        self._types = {}
        self._content_types = {}
        self._templates = {}
        self._exc_types = {}
        self._exc_views = {}

    # -- request ---------------------------------------------------------------------------------

    cdef _Kind _kind(self, request):
        cdef str method = sanitize_method(request.method)
        cdef dict kinds
        cdef bint secure = request.is_secure()
        kinds = self._https if secure else self._http
        kind = kinds.get(method)
        if kind is None:
            kind = kinds.setdefault(method, _Kind(self._m, method, "https" if secure else "http"))
        return <_Kind>kind

    cdef _Kind _kind_of(self, request):
        kind = getattr(request, "_prometheus_kind", None)
        if type(kind) is _Kind:
            return <_Kind>kind
        return self._kind(request)

    def on_request(self, request):
        """Count the request and remember its kind on it; the start time, or None on failure."""
        cdef _Kind kind
        try:
            kind = self._kind(request)
            request._prometheus_kind = kind
            kind.by_method.inc()
            kind.by_transport.inc()
            meta = request.META
            if type(meta) is dict:
                ajax = (<dict>meta).get("HTTP_X_REQUESTED_WITH")
                length = (<dict>meta).get("CONTENT_LENGTH")
            else:
                ajax = meta.get("HTTP_X_REQUESTED_WITH")
                length = meta.get("CONTENT_LENGTH")
            if ajax == "XMLHttpRequest":
                self._ajax.inc()
            size = _body_length(length)
            if size is not None:
                self._request_body.observe(size)
        except Exception:
            _log_failure("a request")
            return None
        return dp_now()

    # -- view ------------------------------------------------------------------------------------

    def on_view(self, request, view_func=None, view_args=None, view_kwargs=None):
        """``process_view``: count the request by (view, transport, method)."""
        cdef _Kind kind
        try:
            kind = self._kind_of(request)
            match = request.resolver_match
            view = match.view_name if match is not None else None
            if not view:
                view = _UNNAMED
            cell = kind.views.get(view)
            if cell is None:
                cell = kind.views.setdefault(
                    view, self._m.requests_by_view_transport_method.labels(view, kind.transport, kind.method)
                )
            cell.inc()
        except Exception:
            _log_failure("a view")

    # -- response --------------------------------------------------------------------------------

    cdef tuple _type_info(self, cls):
        info = self._types.get(cls)
        if info is None:
            fast_charset = issubclass(cls, _HttpResponseBase) and cls.charset is _base_charset
            if issubclass(cls, _HttpResponse) and cls.content is _response_content:
                content = _CONTENT_FAST
            elif issubclass(cls, _StreamingHttpResponse) and cls.content is _streaming_content:
                content = _CONTENT_NONE
            else:
                content = _CONTENT_GENERIC
            info = self._types.setdefault(cls, (fast_charset, content))
        return <tuple>info

    cdef object _charset_of(self, response, bint fast):
        if fast:
            charset = response._charset
            if charset is not None:
                return charset
            store = getattr(response.headers, "_store", None)
            if type(store) is dict:
                entry = (<dict>store).get("content-type")
                content_type = entry[1] if entry is not None else None
                if not content_type:
                    return _settings.DEFAULT_CHARSET
                charset = self._content_types.get(content_type, _MISSING)
                if charset is _MISSING:
                    matched = _CHARSET_RE.search(content_type)
                    charset = matched["charset"].replace('"', "") if matched else None
                    if len(self._content_types) < _CONTENT_TYPE_CACHE_MAX:
                        self._content_types[content_type] = charset
                return _settings.DEFAULT_CHARSET if charset is None else charset
        return getattr(response, "charset", _MISSING)

    def on_response(self, request, response, started):
        cdef double end = dp_now()
        cdef _Kind kind
        cdef _Outcome outcome
        cdef tuple info
        cdef Py_ssize_t total
        cdef int content
        try:
            kind = self._kind_of(request)
            match = getattr(request, "resolver_match", None)
            view = match.view_name if match is not None else None
            if view is None:
                view = _UNNAMED
            status = response.status_code
            info = self._type_info(type(response))
            content = info[1]
            charset = self._charset_of(response, info[0])
            key = (status, view, charset)
            found = kind.responses.get(key)
            if found is None:
                found = kind.responses.setdefault(key, _Outcome(self._m, kind.method, status, view, charset))
            outcome = <_Outcome>found
            outcome.by_status.inc()
            outcome.by_status_view_method.inc()
            if outcome.by_charset is not None:
                outcome.by_charset.inc()
            if getattr(response, "streaming", False):
                self._streaming.inc()
            if content == _CONTENT_FAST:
                container = response._container
                if type(container) is list:
                    total = 0
                    for chunk in <list>container:
                        total += len(chunk)
                    self._response_body.observe(total)
                else:
                    self._response_body.observe(sum(map(len, container)))
            elif content == _CONTENT_GENERIC and hasattr(response, "content"):
                self._response_body.observe(len(response.content))
            if started is None:
                self._unknown.inc()
            else:
                outcome.latency.observe(end - <double>started)
        except Exception:
            _log_failure("a response")

    # -- rarer hooks -----------------------------------------------------------------------------

    def on_template_response(self, request, response):
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

    def on_exception(self, request, exception):
        # The latency of a failed request is observed once, by on_response (fix 5).
        try:
            name = type(exception).__name__
            cell = self._exc_types.get(name)
            if cell is None:
                cell = self._exc_types.setdefault(name, self._m.exceptions_by_type.labels(name))
            cell.inc()
            match = getattr(request, "resolver_match", None)
            if match is not None:
                view = match.view_name or _UNNAMED
                cell = self._exc_views.get(view)
                if cell is None:
                    cell = self._exc_views.setdefault(view, self._m.exceptions_by_view.labels(view))
                cell.inc()
        except Exception:
            _log_failure("an exception")
