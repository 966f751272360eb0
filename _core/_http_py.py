"""Pure-Python twin of ``_http_c.pyx``: the label rules, the per-request recorders, the middlewares' call.

Keep the two files in step (same names, same behaviour; ``tests/test_core_http.py``
runs both side by side). A leaf: it imports nothing from Django or
django_prometheus. ``django_prometheus.http.cells.HttpCells`` resolves the cells
and label families and hands them in, with the few Django classes the response
fast paths compare against. A recorder resolves the cells of a label combination
once, the first time it sees it, and afterwards only increments them; every
entry point logs and swallows its own failures (instrumentation never breaks a
request).
"""

from __future__ import annotations

import logging
import re
from time import perf_counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._seams import Features, HttpCells

__all__ = [
    "INVALID_METHOD",
    "MAX_BODY_SIZE",
    "NO_CELL",
    "SKIP",
    "UNNAMED_VIEW",
    "ServerTiming",
    "AfterRecorder",
    "BeforeRecorder",
    "Middleware",
    "Settings",
    "body_length",
    "charset",
    "get_features",
    "hook_view_name",
    "log_failure",
    "response_body_size",
    "sanitize_method",
    "server_timing_value",
    "set_features",
    "template_name",
    "transport",
    "view_name",
]

logger = logging.getLogger("django_prometheus.middleware")

INVALID_METHOD = "<invalid method>"
UNNAMED_VIEW = "<unnamed view>"
#: The largest ``Content-Length`` observed; beyond it a value is malformed.
MAX_BODY_SIZE = 2**63 - 1
_MAX_BODY_DIGITS = len(str(MAX_BODY_SIZE)) + 2  # room for whitespace or a sign
# Interned label values: a method string from the request maps to one of these.
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")}
# Django's own pattern (django.http.response), so the label equals ``response.charset``.
_CHARSET_RE = re.compile(r";\s*charset=(?P<charset>[^\s;]+)", re.I)
_CONTENT_TYPE_CACHE_MAX = 256
_MISSING: Any = object()

# How a response type exposes what is recorded of it, decided once per type.
_CONTENT_FAST = 1  # HttpResponse's own ``content``: the sum of the chunk lengths, no join
_CONTENT_NONE = 2  # Django's streaming responses: no ``content``
_CONTENT_GENERIC = 3  # anything else: ``len(response.content)`` if it has one
# ``streaming``: Django's two classes declare it as a plain class attribute (False, True)
# that nothing sets per instance; any other type is asked per response.
_STREAMING_NO = 0
_STREAMING_YES = 1
_STREAMING_ASK = 2


_FAILURE = "django_prometheus: could not record the HTTP metrics of %s"


def _log_failure(where: str, failure: str = _FAILURE) -> None:
    # Both pure HTTP modules log through this (the compiled ones share dp_helpers.pxi).
    logger.exception(failure, where)


def log_failure(where: str) -> None:
    """Log the exception being handled: the HTTP metrics of ``where`` were not recorded."""
    _log_failure(where)


class _NoCell:
    """The cell of a disabled family (``PROMETHEUS_DISABLED_METRICS``): counts nothing."""

    __slots__ = ()

    def inc(self, amount: float = 1.0, exemplar: Any = None) -> None:
        pass

    def dec(self, amount: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float, exemplar: Any = None) -> None:
        pass

    def __repr__(self) -> str:
        return "NO_CELL"


#: What the recorders get for a disabled family's cell (the compiled twin skips it outright).
NO_CELL: Any = _NoCell()


# --- the label rules (the middlewares' extension path calls these too) ---------------------------


def sanitize_method(method: object) -> str:
    """The ``method`` label: one of the nine HTTP methods, else ``<invalid method>``.

    Bounded: docs/install.md, What differs, 4.
    """
    return _METHODS.get(method, INVALID_METHOD) if type(method) is str else INVALID_METHOD


def transport(request: Any) -> str:
    """The ``transport`` label: ``https`` when ``request.is_secure()``, else ``http``."""
    return "https" if request.is_secure() else "http"


# Upstream's quirk, kept: the response rule maps only a missing name to ``<unnamed view>``,
# the hooks' rule (process_view, process_exception) an empty one too. Both from the
# resolver match's ``view_name``; these two are the only places the mapping is written
# (the compiled twin's _end reuses the name its on_view read, through the same mapping).
def view_name(request: Any) -> str:
    """The ``view`` label of responses and latency: the resolved view's name, else ``<unnamed view>``."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        name = match.view_name
        if name is not None:
            return name
    return UNNAMED_VIEW


def hook_view_name(request: Any) -> str | None:
    """The ``view`` label of process_view and process_exception: None (nothing counted) when unresolved."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    return match.view_name or UNNAMED_VIEW


def body_length(value: object) -> int | None:
    """The request body size from ``Content-Length``: absent is 0; malformed, negative or absurd is None.

    None is never observed (docs/install.md, What differs, 3). Absurd means beyond ``MAX_BODY_SIZE``: a
    header of hundreds of digits would overflow the histogram's float.
    """
    if not value:
        return 0
    if isinstance(value, str) and len(value) > _MAX_BODY_DIGITS:
        return None
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return n if 0 <= n <= MAX_BODY_SIZE else None


def template_name(response: Any) -> str | None:
    """The ``templatename`` label, or None when the response has no ``template_name``."""
    return str(response.template_name) if hasattr(response, "template_name") else None


def charset(response: Any) -> str | None:
    """The ``charset`` label, or None when the response has no ``charset``."""
    return str(response.charset) if hasattr(response, "charset") else None


def response_body_size(response: Any) -> int | None:
    """``len(response.content)``, or None when the response has no ``content`` (streaming)."""
    return len(response.content) if hasattr(response, "content") else None


# --- the settings the recorders read per request -------------------------------------------------


class Settings:
    """``DEFAULT_CHARSET`` and ``SECURE_PROXY_SSL_HEADER`` as slots: the recorders read them per request.

    ``django_prometheus.http.cells`` keeps one current (``set``, on Django's
    ``setting_changed``); a ``django.conf.settings`` read would be a Python call.
    """

    __slots__ = (
        "DEFAULT_CHARSET",
        "SECURE_PROXY_SSL_HEADER",
        "default_content_type",
        "default_content_type_charset",
    )

    def __init__(self, default_charset: Any = "utf-8", secure_proxy_ssl_header: Any = None) -> None:
        self.set(default_charset, secure_proxy_ssl_header)

    def set(self, default_charset: Any, secure_proxy_ssl_header: Any) -> None:
        """Take the current values of both settings."""
        self.DEFAULT_CHARSET = default_charset
        self.SECURE_PROXY_SSL_HEADER = secure_proxy_ssl_header
        # What HttpResponse writes when given no content type, and its charset label (the regex's).
        content_type = f"text/html; charset={default_charset}"
        matched = _CHARSET_RE.search(content_type)
        self.default_content_type = content_type
        self.default_content_type_charset = matched["charset"].replace('"', "") if matched else None


# --- Server-Timing: the header's writer (the Before recorder's app entry, the features' three) -----

_ST_KEY = "server-timing"
_ST_NAME = "Server-Timing"
_ST_DECIDED_MAX = 1024
_ST_FORWARDED_KEY_MAX = 256


def server_timing_value(app: float, db: Any = None, cache: Any = None) -> str:
    """The header's entries: ``app``, then ``db`` and ``cache`` when their accounting ran.

    ``db`` has ``seconds`` and ``queries``, ``cache`` ``seconds`` and ``operations``
    (the per-request accounting states).
    """
    parts = [f"app;dur={app * 1000.0:.3f}"]
    if db is not None:
        parts.append(f'db;dur={db.seconds * 1000.0:.3f};desc="{db.queries} queries"')
    if cache is not None:
        parts.append(f'cache;dur={cache.seconds * 1000.0:.3f};desc="{cache.operations} ops"')
    return ", ".join(parts)


class ServerTiming:
    """``PROMETHEUS_SERVER_TIMING``'s writer: the header for allowed clients' responses.

    ``decide(remote_addr, forwarded_for)`` is the Python allow rule (``servertiming``),
    asked once per address (and X-Forwarded-For when ``proxies``: only then does it
    matter); the answers are kept (bounded). Never on a streaming response; appended to
    a ``Server-Timing`` the view set. The Before recorder writes the app entry alone
    (``write``); the features' core calls it with the db and cache accounting states.
    ``plain``: a response class whose exact instances never stream (Django's
    ``HttpResponse``: ``streaming`` is a class attribute nothing sets per instance),
    so they are not asked; any other is.
    """

    __slots__ = ("_decide", "_decided", "_plain", "_proxies")

    def __init__(self, decide: Any, proxies: bool, plain: Any = None) -> None:
        self._decide = decide
        self._proxies = bool(proxies)
        self._decided: dict[Any, bool] = {}
        self._plain = plain

    def decided(self) -> int:
        """How many allow decisions are kept (tests: hostile addresses grow nothing)."""
        return len(self._decided)

    def __call__(
        self, request: Any, response: Any, seconds: float, db: Any = None, cache: Any = None
    ) -> None:
        if self._allows(request) and not self._streams(response):
            _st_write(response, server_timing_value(seconds, db, cache))

    def write(self, request: Any, response: Any, seconds: float) -> None:
        if self._allows(request) and not self._streams(response):
            _st_write(response, server_timing_value(seconds))

    def _streams(self, response: Any) -> bool:
        if type(response) is self._plain:
            return False
        return bool(getattr(response, "streaming", False))

    def _allows(self, request: Any) -> bool:
        meta = request.META
        remote = meta.get("REMOTE_ADDR")
        if self._proxies:
            forwarded = meta.get("HTTP_X_FORWARDED_FOR")
            key: Any = (remote, forwarded)
        else:
            forwarded = None
            key = remote
        try:
            found = self._decided.get(key)
        except TypeError:  # an unhashable META value
            found, key = None, None
        if found is None:
            found = bool(self._decide(remote, forwarded))
            if key is not None and (forwarded is None or len(forwarded) <= _ST_FORWARDED_KEY_MAX):
                if len(self._decided) >= _ST_DECIDED_MAX:
                    self._decided.clear()
                self._decided[key] = found
        return found is True


def _st_write(response: Any, ours: str) -> None:
    headers = response.headers
    store = getattr(headers, "_store", None)
    if type(store) is dict:
        # Django's ResponseHeaders, as its __setitem__ writes (our value is ASCII; a view's own
        # value was checked when the view set it).
        present = store.get(_ST_KEY)
        store[_ST_KEY] = (_ST_NAME, ours if present is None else f"{present[1]}, {ours}")
    else:
        present = headers.get(_ST_NAME)
        headers[_ST_NAME] = f"{present}, {ours}" if present else ours


# --- the opt-in features' seam --------------------------------------------------------------------


class _Skip:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"


#: What ``features.begin``/``features.end`` return for a request that is not recorded at all.
SKIP: Any = _Skip()
_FEATURES: Any = None
_NO_STATE: Any = object()  # features.begin raised: record as if no feature were on


def set_features(features: Features | None) -> None:
    """Install the object that runs the opt-in HTTP features around each request; None turns them off.

    The protocol is ``_seams.Features``: ``begin``, ``defer``, ``end``, ``abort``
    and ``excluded``.
    """
    global _FEATURES
    _FEATURES = features


def get_features() -> Features | None:
    """The object ``set_features`` installed, or None."""
    return _FEATURES


def _hook_excluded(request: Any) -> bool:
    # The After middleware's view, template and exception hooks, while features are on.
    features = _FEATURES
    if features is None:
        return False
    try:
        return bool(features.excluded(request))
    except Exception:
        _log_failure("an exclusion rule")
        return False


def _features_begin(features: Any, request: Any, outer: bool) -> Any:
    try:
        return features.begin(request, outer)
    except Exception:
        _log_failure("a request (opt-in features)")
        return _NO_STATE


def _features_defer(features: Any, state: Any) -> bool:
    if state is _NO_STATE:
        return False
    try:
        return bool(features.defer)
    except Exception:
        _log_failure("a request (opt-in features)")
        return False


def _features_abort(features: Any, request: Any, state: Any, outer: bool) -> None:
    if state is _NO_STATE:
        return
    try:
        features.abort(request, state, outer)
    except Exception:
        _log_failure("a failed request (opt-in features)")


def _features_finish(
    features: Any,
    recorder: Any,
    request: Any,
    response: Any,
    state: Any,
    outer: bool,
    defer: bool,
    recorded: Any,
    started: float,
) -> None:
    skip = None
    if state is not _NO_STATE:
        try:
            skip = features.end(request, response, state, outer)
        except Exception:
            _log_failure("a response (opt-in features)")
    if defer:
        if skip is SKIP:
            recorder._drop(request)
            return
        recorded = recorder._count(request, recorded)
    recorder._end(request, response, recorded, started)


# --- the recorders --------------------------------------------------------------------------------


class _Recorder:
    """One middleware's recording around ``get_response``: ``_begin``, the clock, then ``_end``.

    ``_begin`` returns what ``_end`` needs of the request (the After recorder's
    method/transport entry), handed over by the middlewares' call; None makes
    ``_end`` work it out again.
    """

    __slots__ = ()

    def _begin(self, request: Any) -> Any:
        return None

    # The deferred path (features whose exclusions wait for the view) splits _begin in two: the
    # request's own facts at once (_resolve), the counts once the request is known to be
    # recorded (_count, handed what _resolve returned); _drop when it is not.
    def _resolve(self, request: Any) -> Any:
        return None

    def _count(self, request: Any, resolved: Any) -> Any:
        return self._begin(request)

    def _drop(self, request: Any) -> None:
        pass

    def _end(self, request: Any, response: Any, state: Any, started: float) -> None:
        pass


class BeforeRecorder(_Recorder):
    """What ``PrometheusBeforeMiddleware`` records: requests, responses, latency including middlewares."""

    __slots__ = ("_latency", "_requests", "_responses", "_timing")

    def __init__(self, cells: HttpCells) -> None:
        self._requests = cells.requests_total
        self._responses = cells.responses_total
        self._latency = cells.requests_latency_before
        timing = getattr(cells, "server_timing", None)
        self._timing = timing if type(timing) is ServerTiming else None  # PROMETHEUS_SERVER_TIMING

    def _begin(self, request: Any) -> Any:
        try:
            self._requests.inc()
        except Exception:
            _log_failure("a request")
        return None

    def _end(self, request: Any, response: Any, state: Any, started: float) -> None:
        end = perf_counter()
        try:
            self._responses.inc()
            self._latency.observe(end - started)
            if self._timing is not None:
                self._timing.write(request, response, end - started)
        except Exception:
            _log_failure("a response")


class _Kind:
    """The cells of one (sanitised method, transport) combination, and its sub-caches."""

    __slots__ = ("by_method", "by_transport", "method", "responses", "transport", "views")

    def __init__(self, cells: HttpCells, method: str, transport: str) -> None:
        self.method = method
        self.transport = transport
        self.by_method = cells.requests_by_method(method)
        self.by_transport = cells.requests_by_transport(transport)
        self.views: dict[str, Any] = {}  # view -> requests_by_view_transport_method cell
        self.responses: dict[tuple, _Outcome] = {}  # (status, view, charset) -> cells


class _Outcome:
    """The cells one response increments, for one (method, status, view, charset)."""

    __slots__ = ("by_charset", "by_status", "by_status_view_method", "latency")

    def __init__(self, cells: HttpCells, method: str, status: object, view: str, charset: object) -> None:
        status_label = str(status)
        self.by_status = cells.responses_by_status(status_label)
        self.by_status_view_method = cells.responses_by_status_view_method(status_label, view, method)
        self.by_charset = None if charset is None else cells.responses_by_charset(str(charset))
        self.latency = cells.requests_latency_by_view_method(view, method)


class AfterRecorder(_Recorder):
    """What ``PrometheusAfterMiddleware`` records, with every label combination resolved once."""

    __slots__ = (
        "_ajax",
        "_base_charset",
        "_cells",
        "_content_types",
        "_exc_types",
        "_exc_views",
        "_ignored",
        "_rules",
        "_fast_settings",
        "_http",
        "_https",
        "_request_body",
        "_response",
        "_response_base",
        "_response_body",
        "_response_content",
        "_scheme_sources",
        "_schemes",
        "_secure_methods",
        "_settings",
        "_streaming",
        "_streaming_content",
        "_streaming_response",
        "_templates",
        "_types",
    )

    def __init__(self, cells: HttpCells) -> None:
        self._cells = cells
        self._ajax = cells.requests_ajax
        self._request_body = cells.requests_body_bytes
        self._response_body = cells.responses_body_bytes
        self._streaming = cells.responses_streaming
        self._settings = cells.settings
        self._fast_settings = self._settings if isinstance(self._settings, Settings) else None
        self._response_base, self._response, self._streaming_response = cells.response_types
        self._base_charset = self._response_base.charset
        self._response_content = self._response.content
        self._streaming_content = self._streaming_response.content
        self._scheme_sources = cells.scheme_sources
        self._secure_methods = cells.secure_methods
        self._schemes: dict[type, tuple[str, str, bool] | None] = {}  # request type -> its scheme's place
        self._http: dict[str, _Kind] = {}  # method -> kind, one dict per transport (the nine are keys)
        self._https: dict[str, _Kind] = {}
        self._types: dict[type, tuple[bool, int, int]] = {}
        self._content_types: dict[str, object] = {}
        self._templates: dict[str, Any] = {}
        self._exc_types: dict[str, Any] = {}
        self._rules = tuple(getattr(cells, "rules", ()))  # (record, family): ``Spec.record``
        self._exc_views: dict[str, Any] = {}
        # PROMETHEUS_IGNORED_EXCEPTIONS: a tuple of classes for isinstance, None when empty.
        self._ignored = getattr(cells, "ignored_exceptions", None) or None

    # -- request ---------------------------------------------------------------------------------

    def _scheme_source(self, cls: type) -> tuple[str, str, bool] | None:
        source = self._schemes.get(cls, _MISSING)
        if source is _MISSING:
            source = None
            is_secure, scheme = self._secure_methods
            if cls.is_secure is is_secure and cls.scheme is scheme:  # type: ignore[attr-defined]
                for base, attr, key, get_scheme in self._scheme_sources:
                    if issubclass(cls, base) and cls._get_scheme is get_scheme:  # type: ignore[attr-defined]
                        source = (attr, key, attr == "META")
                        break
            source = self._schemes.setdefault(cls, source)
        return source

    def _is_secure(self, request: Any, meta: Any) -> bool:
        # The transport rule is request.is_secure(); for Django's own request classes, with
        # no SECURE_PROXY_SSL_HEADER, that is the scheme the server passed, read directly
        # (from ``meta``, the request's META when the caller has it, for WSGIRequest).
        source = self._scheme_source(type(request))
        if source is None or (self._fast_settings or self._settings).SECURE_PROXY_SSL_HEADER:
            return request.is_secure()
        attr, key, from_meta = source
        values = (request.META if meta is None else meta) if from_meta else getattr(request, attr)
        scheme = values.get(key)
        if scheme is None:
            # Not where Django's request keeps it (e.g. META replaced): ask the request.
            return request.is_secure()
        return scheme == "https"

    def _kind(self, request: Any, meta: Any) -> _Kind:
        # One lookup by the request's own method string: only the sanitised nine (and
        # ``<invalid method>``) are ever keys, so a client cannot grow the dict.
        method = request.method
        secure = self._is_secure(request, meta)
        kinds = self._https if secure else self._http
        kind = kinds.get(method) if type(method) is str else None
        if kind is None:
            label = sanitize_method(method)
            kind = kinds.get(label)
            if kind is None:
                kind = kinds.setdefault(label, _Kind(self._cells, label, "https" if secure else "http"))
        return kind

    def _begin(self, request: Any) -> Any:
        kind = None
        try:
            meta = request.META
            kind = self._kind(request, meta)
            # For on_view (the middlewares' call hands _end the kind it returns). The compiled
            # twin keeps it in a per-thread slot instead, which a Python-level slot
            # (threading.local and a tuple) would make dearer than this.
            request._prometheus_kind = kind
            self._count_request(kind, meta)
        except Exception:
            _log_failure("a request")
        return kind

    def _count_request(self, kind: _Kind, meta: Any) -> None:
        # _begin's counts: the request's method and transport, ajax, body size.
        kind.by_method.inc()
        kind.by_transport.inc()
        if meta.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            self._ajax.inc()
        size = body_length(meta.get("CONTENT_LENGTH"))
        if size is not None:
            self._request_body.observe(size)

    def _resolve(self, request: Any) -> Any:
        # _begin's kind, without its counts: on_view and _end find it on the request.
        kind = None
        try:
            kind = self._kind(request, request.META)
            request._prometheus_kind = kind
        except Exception:
            _log_failure("a request")
        return kind

    def _count(self, request: Any, resolved: Any) -> Any:
        # The deferred counts of a request _resolve saw (resolved: its kind; None: it failed).
        if type(resolved) is not _Kind:
            return self._begin(request)
        try:
            self._count_request(resolved, request.META)
        except Exception:
            _log_failure("a request")
        return resolved

    def _kind_of(self, request: Any) -> _Kind:
        kind = getattr(request, "_prometheus_kind", None)
        return kind if type(kind) is _Kind else self._kind(request, None)

    # -- view ------------------------------------------------------------------------------------

    def on_view(
        self, request: Any, view_func: Any = None, view_args: Any = None, view_kwargs: Any = None
    ) -> None:
        """``process_view``: count the request by (view, transport, method)."""
        try:
            view = hook_view_name(request)
            if view is None or _hook_excluded(request):
                return
            kind = self._kind_of(request)
            cell = kind.views.get(view)
            if cell is None:
                cell = kind.views.setdefault(
                    view, self._cells.requests_by_view_transport_method(view, kind.transport, kind.method)
                )
            cell.inc()
        except Exception:
            _log_failure("a view")

    # -- response --------------------------------------------------------------------------------

    def _type_info(self, cls: type) -> tuple[bool, int, int]:
        info = self._types.get(cls)
        if info is None:
            fast_charset = issubclass(cls, self._response_base) and cls.charset is self._base_charset  # type: ignore[attr-defined]
            streaming = _STREAMING_ASK
            if issubclass(cls, self._response) and cls.content is self._response_content:  # type: ignore[attr-defined]
                content = _CONTENT_FAST
                if cls.streaming is False:  # type: ignore[attr-defined]
                    streaming = _STREAMING_NO
            elif issubclass(cls, self._streaming_response) and cls.content is self._streaming_content:  # type: ignore[attr-defined]
                content = _CONTENT_NONE
                if cls.streaming is True:  # type: ignore[attr-defined]
                    streaming = _STREAMING_YES
            else:
                content = _CONTENT_GENERIC
            info = self._types.setdefault(cls, (fast_charset, content, streaming))
        return info

    def _charset_of(self, response: Any, fast: bool) -> object:
        """The charset rule, without Django's property and regex for its own response classes."""
        if fast:
            value = response._charset
            if value is not None:
                return value
            store = getattr(response.headers, "_store", None)
            if type(store) is dict:
                entry = store.get("content-type")
                content_type = entry[1] if entry is not None else None
                known = self._fast_settings
                if not content_type:
                    return (known or self._settings).DEFAULT_CHARSET
                if known is not None and content_type == known.default_content_type:
                    # What HttpResponse writes by default: no hashing of a fresh string.
                    value = known.default_content_type_charset
                    return known.DEFAULT_CHARSET if value is None else value
                value = self._content_types.get(content_type, _MISSING)
                if value is _MISSING:
                    matched = _CHARSET_RE.search(content_type)
                    value = matched["charset"].replace('"', "") if matched else None
                    if len(self._content_types) < _CONTENT_TYPE_CACHE_MAX:
                        self._content_types[content_type] = value
                return (known or self._settings).DEFAULT_CHARSET if value is None else value
        return charset(response)

    def _end(self, request: Any, response: Any, state: Any, started: float) -> None:
        end = perf_counter()
        try:
            kind = state if type(state) is _Kind else self._kind_of(request)
            view = view_name(request)
            status = response.status_code
            fast_charset, content, streaming = self._type_info(type(response))
            label = self._charset_of(response, fast_charset)
            key = (status, view, label)
            outcome = kind.responses.get(key)
            if outcome is None:
                outcome = kind.responses.setdefault(
                    key, _Outcome(self._cells, kind.method, status, view, label)
                )
            outcome.by_status.inc()
            outcome.by_status_view_method.inc()
            if outcome.by_charset is not None:
                outcome.by_charset.inc()
            if streaming == _STREAMING_YES or (
                streaming == _STREAMING_ASK and getattr(response, "streaming", False)
            ):
                self._streaming.inc()
            if content == _CONTENT_FAST:
                self._response_body.observe(sum(map(len, response._container)))
            elif content == _CONTENT_GENERIC:
                size = response_body_size(response)
                if size is not None:
                    self._response_body.observe(size)
            outcome.latency.observe(end - started)
        except Exception:
            _log_failure("a response")
        for record, family in self._rules:
            try:
                record(family, request, response)
            except Exception:
                _log_failure("a response")

    # -- rarer hooks -----------------------------------------------------------------------------

    def on_template_response(self, request: Any, response: Any) -> Any:
        """``process_template_response``: count the response by template name."""
        try:
            name = template_name(response)
            if name is not None and not _hook_excluded(request):
                cell = self._templates.get(name)
                if cell is None:
                    cell = self._templates.setdefault(name, self._cells.responses_by_templatename(name))
                cell.inc()
        except Exception:
            _log_failure("a template response")
        return response

    def on_exception(self, request: Any, exception: BaseException) -> None:
        """``process_exception``: count by type and view (latency: once, when the response is recorded).

        docs/install.md, What differs, 5.
        """
        try:
            if self._ignored is not None and isinstance(exception, self._ignored):
                return
            if _hook_excluded(request):
                return
            name = type(exception).__name__
            cell = self._exc_types.get(name)
            if cell is None:
                cell = self._exc_types.setdefault(name, self._cells.exceptions_by_type(name))
            cell.inc()
            view = hook_view_name(request)
            if view is not None:
                cell = self._exc_views.get(view)
                if cell is None:
                    cell = self._exc_views.setdefault(view, self._cells.exceptions_by_view(view))
                cell.inc()
        except Exception:
            _log_failure("an exception")


# --- the middlewares' call ------------------------------------------------------------------------


class Middleware:
    """The base of both middlewares: ``__call__`` records around ``get_response``.

    ``_recorder`` None selects the extension path: the subclass' ``_call_hooks``
    and ``_acall_hooks`` (upstream's hook by hook).
    """

    get_response: Any = None
    async_mode: bool = False
    _recorder: _Recorder | None = None

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        recorder = self._recorder
        if recorder is None:
            return self._call_hooks(request)  # type: ignore[attr-defined]
        features = _FEATURES
        if features is not None:
            return self._call_features(request, recorder, features)
        recorded = recorder._begin(request)
        started = perf_counter()
        response = self.get_response(request)
        recorder._end(request, response, recorded, started)
        return response

    async def __acall__(self, request: Any) -> Any:
        recorder = self._recorder
        if recorder is None:
            return await self._acall_hooks(request)  # type: ignore[attr-defined]
        features = _FEATURES
        if features is None:
            recorded = recorder._begin(request)
            started = perf_counter()
            response = await self.get_response(request)
            recorder._end(request, response, recorded, started)
            return response
        outer = isinstance(recorder, BeforeRecorder)
        state = _features_begin(features, request, outer)
        if state is SKIP:
            return await self.get_response(request)
        defer = _features_defer(features, state)
        recorded = recorder._resolve(request) if defer else recorder._begin(request)
        started = perf_counter()
        try:
            response = await self.get_response(request)
        except BaseException:
            _features_abort(features, request, state, outer)
            raise
        _features_finish(features, recorder, request, response, state, outer, defer, recorded, started)
        return response

    def _call_features(self, request: Any, recorder: Any, features: Any) -> Any:
        outer = isinstance(recorder, BeforeRecorder)
        state = _features_begin(features, request, outer)
        if state is SKIP:
            return self.get_response(request)
        defer = _features_defer(features, state)
        recorded = recorder._resolve(request) if defer else recorder._begin(request)
        started = perf_counter()
        try:
            response = self.get_response(request)
        except BaseException:
            _features_abort(features, request, state, outer)
            raise
        _features_finish(features, recorder, request, response, state, outer, defer, recorded, started)
        return response

    def _async_hooks(self) -> tuple[Any, Any]:
        """The After middleware's ``process_view`` and ``process_template_response`` under ASGI."""
        return self._process_view_async, self._process_template_response_async

    # The After middleware's hooks under ASGI: native coroutines, so Django adds no sync_to_async.
    async def _process_view_async(
        self, request: Any, view_func: Any = None, view_args: Any = None, view_kwargs: Any = None
    ) -> None:  # the arguments as the compiled twin's (and on_view's)
        self._recorder.on_view(request)  # type: ignore[union-attr]

    async def _process_template_response_async(self, request: Any, response: Any) -> Any:
        return self._recorder.on_template_response(request, response)  # type: ignore[union-attr]
