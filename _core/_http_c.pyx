# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""Compiled HTTP recording: the label rules, the per-request recorders, the middlewares' call.

The pure-Python twin is ``_http_py.py``; keep both in step (same names, same
behaviour; ``tests/test_core_http.py`` runs both side by side). A leaf: it
imports nothing from Django or django_prometheus.
``django_prometheus.http.cells.HttpCells`` resolves the cells and label
families and hands them in, with the few Django classes the response fast
paths compare against. A recorder resolves the cells of a label combination
once, the first time it sees it, and afterwards only increments them; every
entry point logs and swallows its own failures (instrumentation never breaks a
request).
"""

import logging
import re

cimport cython

from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_IsValid
from cpython.exc cimport PyErr_Fetch, PyErr_Occurred, PyErr_Restore
from cpython.ref cimport Py_DECREF, Py_XDECREF, Py_XINCREF

cdef extern from "dp_clock.h":
    double dp_clock() nogil

# What the After recorder's _begin learnt of a request, for the hooks and _end that follow it on
# the same thread: one slot per thread (so threads and free-threaded builds never share it),
# matched by the identity of the recorder and the request. It holds references to the request,
# its _Kind and what on_view read (the resolver match and its view name), so an address it
# compares is never a freed and reused one; _end of the request empties it, the next request's
# _begin on the thread replaces it. Anything else (an interleaved request under ASGI, a nested
# one, a hook called without _begin) does not match and is worked out from the request again.
# (dp_tls.h; the CPython-internal C, one header per concern, is declared in dp_cpython.pxi.)
include "dp_cpython.pxi"

# The cells' C entry points and types (_api, _Counter, ..., _Gauge), as _features_c has them.
include "dp_cells_client.pxi"

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
MAX_BODY_SIZE = 2 ** 63 - 1
cdef dict _METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")}
cdef str _INVALID = INVALID_METHOD
cdef str _UNNAMED = UNNAMED_VIEW
cdef object _MAX_BODY = MAX_BODY_SIZE
cdef Py_ssize_t _MAX_BODY_DIGITS = len(str(MAX_BODY_SIZE)) + 2  # room for whitespace or a sign
# Django's own pattern (django.http.response), so the label equals ``response.charset``.
_CHARSET_RE = re.compile(r";\s*charset=(?P<charset>[^\s;]+)", re.I)
cdef Py_ssize_t _CONTENT_TYPE_CACHE_MAX = 256
cdef object _MISSING = object()

# How a response type exposes what is recorded of it, decided once per type.
cdef enum:
    _CONTENT_FAST = 1  # HttpResponse's own ``content``: the sum of the chunk lengths, no join
    _CONTENT_NONE = 2  # Django's streaming responses: no ``content``
    _CONTENT_GENERIC = 3  # anything else: ``len(response.content)`` if it has one
# ``streaming``: Django's two classes declare it as a plain class attribute (False, True)
# that nothing sets per instance; any other type is asked per response.
cdef enum:
    _STREAMING_NO = 0
    _STREAMING_YES = 1
    _STREAMING_ASK = 2


# ``except -1`` rather than ``void``: a void C function that may raise makes every call
# site ask ``PyErr_Occurred()`` (a thread-state lookup), about fifty times a request.
# A disabled family's cell (``PROMETHEUS_DISABLED_METRICS``): skipped after the cell-type test,
# so an enabled family pays nothing for it and a disabled one next to nothing.
cdef class _NoCell:
    """The cell of a disabled family: counts nothing (the recorders do not even call it)."""

    def inc(self, amount=1.0, exemplar=None):
        pass

    def dec(self, amount=1.0):
        pass

    def set(self, value):
        pass

    def observe(self, amount, exemplar=None):
        pass

    def __repr__(self):
        return "NO_CELL"


NO_CELL = _NoCell()
cdef object _NO_CELL = NO_CELL
cdef str _FAILURE = "django_prometheus: could not record the HTTP metrics of %s"
# _inc, _observe, _gauge_add, _log_failure: shared with _features_c.
include "dp_helpers.pxi"


def log_failure(str where):
    """Log the exception being handled: the HTTP metrics of ``where`` were not recorded."""
    _log_failure(where)


cdef inline bint _same(a, b) except -1:
    return a is b or a == b


# For the fresh strings Django builds per request (the method, the view name, the content
# type): two exact str are compared as str (length, kind, bytes), not by rich comparison.
cdef inline bint _same_str(a, b) except -1:
    # Both exact str and equal (a str subclass never matches, as it never is a key here).
    return a is b or (type(a) is str and type(b) is str and (<str>a) == (<str>b))


cdef inline bint _same_key(a, b) except -1:
    # ``a is b or a == b`` (dict key equality), two exact str compared as str.
    if a is b:
        return True
    if type(a) is str and type(b) is str:
        return (<str>a) == (<str>b)
    return a == b


cdef inline bint _eq_str(a, str b) except -1:
    # ``a == b``, compared as str when ``a`` is an exact str.
    if a is b:
        return True
    if type(a) is str:
        return (<str>a) == b
    return a == b


cdef inline int _slot_set(dp_http_slot *slot, void *recorder, PyObject *request, PyObject *kind,
                          PyObject *match, PyObject *view) except -1:
    # Takes new references to what it is given (NULL allowed) and drops the old ones once
    # the slot is consistent: a finaliser run by the release may use the slot again.
    cdef PyObject *old_request = slot.request
    cdef PyObject *old_kind = slot.kind
    cdef PyObject *old_match = slot.match
    cdef PyObject *old_view = slot.view
    Py_XINCREF(request)
    Py_XINCREF(kind)
    Py_XINCREF(match)
    Py_XINCREF(view)
    slot.recorder = recorder
    slot.request = request
    slot.kind = kind
    slot.match = match
    slot.view = view
    Py_XDECREF(old_request)
    Py_XDECREF(old_kind)
    Py_XDECREF(old_match)
    Py_XDECREF(old_view)
    return 0


cdef inline int _slot_clear(dp_http_slot *slot) except -1:
    return _slot_set(slot, NULL, NULL, NULL, NULL, NULL)


cdef inline void _slot_clear_noexcept(dp_http_slot *slot) noexcept:
    _slot_set(slot, NULL, NULL, NULL, NULL, NULL)


# --- the label rules (the middlewares' extension path calls these too) ---------------------------


cpdef str sanitize_method(method):
    """The ``method`` label: one of the nine HTTP methods, else ``<invalid method>``.

    Bounded: docs/install.md, What differs, 4.
    """
    if type(method) is not str:
        return _INVALID
    found = _METHODS.get(method)
    return _INVALID if found is None else <str>found


cpdef str transport(request):
    """The ``transport`` label: ``https`` when ``request.is_secure()``, else ``http``."""
    return "https" if request.is_secure() else "http"


# Upstream's quirk, kept: the response rule maps only a missing name to ``<unnamed view>``,
# the hooks' rule (process_view, process_exception) an empty one too. Both from the
# resolver match's ``view_name``; these two are the only places the mapping is written.
cdef inline object _response_view(name):
    return _UNNAMED if name is None else name


cdef inline object _hook_view(name):
    return name or _UNNAMED


cpdef object view_name(request):
    """The ``view`` label of responses and latency: the resolved view's name, else ``<unnamed view>``."""
    match = getattr(request, "resolver_match", None)
    return _UNNAMED if match is None else _response_view(match.view_name)


cpdef object hook_view_name(request):
    """The ``view`` label of process_view and process_exception: None (nothing counted) when unresolved."""
    match = getattr(request, "resolver_match", None)
    return None if match is None else _hook_view(match.view_name)


cpdef object body_length(value):
    """The request body size from ``Content-Length``: absent is 0; malformed, negative or absurd is None.

    None is never observed (docs/install.md, What differs, 3). Absurd means beyond ``MAX_BODY_SIZE``: a
    header of hundreds of digits would overflow the histogram's float.
    """
    if not value:
        return 0
    if isinstance(value, str) and len(<str>value) > _MAX_BODY_DIGITS:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if 0 <= n <= _MAX_BODY else None


cdef inline double _body_size(value) except? -2:
    # body_length for the recorder, as a double: -1 when it must not be observed.
    if value is None:
        return 0.0
    size = body_length(value)
    return -1.0 if size is None else <double>(<long long>size)


def template_name(response):
    """The ``templatename`` label, or None when the response has no ``template_name``."""
    return str(response.template_name) if hasattr(response, "template_name") else None


def charset(response):
    """The ``charset`` label, or None when the response has no ``charset``."""
    return str(response.charset) if hasattr(response, "charset") else None


def response_body_size(response):
    """``len(response.content)``, or None when the response has no ``content`` (streaming)."""
    return len(response.content) if hasattr(response, "content") else None


# --- the settings the recorders read per request -------------------------------------------------


cdef class Settings:
    """``DEFAULT_CHARSET`` and ``SECURE_PROXY_SSL_HEADER`` as C fields: the recorders read them per request.

    ``django_prometheus.http.cells`` keeps one current (``set``, on Django's
    ``setting_changed``); a plain Python attribute read would cost a dict
    lookup per request, a ``django.conf.settings`` read a Python call.
    """

    cdef public object DEFAULT_CHARSET
    cdef public object SECURE_PROXY_SSL_HEADER
    # What HttpResponse writes when given no content type, and its charset label (the regex's).
    cdef readonly str default_content_type
    cdef readonly object default_content_type_charset

    def __init__(self, default_charset="utf-8", secure_proxy_ssl_header=None):
        self.set(default_charset, secure_proxy_ssl_header)

    def set(self, default_charset, secure_proxy_ssl_header):
        """Take the current values of both settings."""
        self.DEFAULT_CHARSET = default_charset
        self.SECURE_PROXY_SSL_HEADER = secure_proxy_ssl_header
        content_type = f"text/html; charset={default_charset}"
        matched = _CHARSET_RE.search(content_type)
        self.default_content_type = content_type
        self.default_content_type_charset = matched["charset"].replace('"', "") if matched else None


# --- Server-Timing: the header's writer (the Before recorder's app entry, the features' three) -----

cdef extern from "dp_timing.h":
    PyObject *dp_timing_value(double app, bint has_db, double db, long long queries, bint has_cache,
                              double cache, long long ops)

cdef str _ST_KEY = "server-timing"
cdef str _ST_NAME = "Server-Timing"
cdef str _ST_REMOTE = "REMOTE_ADDR"
cdef str _ST_FORWARDED = "HTTP_X_FORWARDED_FOR"
cdef Py_ssize_t _ST_DECIDED_MAX = 1024
cdef Py_ssize_t _ST_FORWARDED_KEY_MAX = 256
cdef long long _ST_COUNT_MAX = 10 ** 18


def server_timing_value(double app, db=None, cache=None):
    """The header's entries: ``app``, then ``db`` and ``cache`` when their accounting ran.

    ``db`` has ``seconds`` and ``queries``, ``cache`` ``seconds`` and ``operations``
    (the per-request accounting states). Written in C (``dp_timing.h``), with
    Python's ``format(ms, ".3f")`` digits.
    """
    return _st_value(app, db, cache)


cdef object _st_value(double app, db, cache):
    cdef double db_seconds = 0.0, cache_seconds = 0.0
    cdef long long queries = 0, ops = 0
    cdef bint counted = True
    if db is not None:
        db_seconds = db.seconds
        n = db.queries
        if type(n) is int and 0 <= n < _ST_COUNT_MAX:
            queries = n
        else:
            counted = False
    if cache is not None:
        cache_seconds = cache.seconds
        n = cache.operations
        if type(n) is int and 0 <= n < _ST_COUNT_MAX:
            ops = n
        else:
            counted = False
    cdef PyObject *written
    if counted:
        written = dp_timing_value(app, db is not None, db_seconds, queries, cache is not None, cache_seconds, ops)
        if written is not NULL:
            value = <object>written
            Py_DECREF(value)  # <object> took a reference of its own
            return value
        if PyErr_Occurred():
            raise MemoryError()
    # A number dp_timing.h does not write (a rounding tie, an absurd duration): Python's text.
    parts = [f"app;dur={app * 1000.0:.3f}"]
    if db is not None:
        parts.append(f'db;dur={db.seconds * 1000.0:.3f};desc="{db.queries} queries"')
    if cache is not None:
        parts.append(f'cache;dur={cache.seconds * 1000.0:.3f};desc="{cache.operations} ops"')
    return ", ".join(parts)


@cython.final
cdef class ServerTiming:
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

    cdef object _decide
    cdef bint _proxies
    cdef dict _decided
    cdef object _plain

    def __init__(self, decide, bint proxies, plain=None):
        self._decide = decide
        self._proxies = proxies
        self._decided = {}
        self._plain = plain

    def decided(self):
        """How many allow decisions are kept (tests: hostile addresses grow nothing)."""
        return len(self._decided)

    def __call__(self, request, response, double seconds, db=None, cache=None):
        if self._allows(request) and not self._streams(response):
            _st_write(response, _st_value(seconds, db, cache))

    cdef int write(self, request, response, double seconds) except -1:
        if self._allows(request) and not self._streams(response):
            _st_write(response, _st_value(seconds, None, None))
        return 0

    cdef inline bint _streams(self, response) except -1:
        if type(response) is self._plain:
            return False
        return bool(getattr(response, "streaming", False))

    cdef bint _allows(self, request) except -1:
        meta = request.META
        if type(meta) is dict:
            remote = (<dict>meta).get(_ST_REMOTE)
        else:
            remote = meta.get(_ST_REMOTE)
        if self._proxies:
            forwarded = (<dict>meta).get(_ST_FORWARDED) if type(meta) is dict else meta.get(_ST_FORWARDED)
            key = (remote, forwarded)
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


cdef int _st_write(response, str ours) except -1:
    headers = response.headers
    store = getattr(headers, "_store", None)
    if type(store) is dict:
        # Django's ResponseHeaders, as its __setitem__ writes (our value is ASCII; a view's own
        # value was checked when the view set it).
        present = (<dict>store).get(_ST_KEY)
        (<dict>store)[_ST_KEY] = (_ST_NAME, ours if present is None else f"{(<tuple>present)[1]}, {ours}")
    else:
        present = headers.get(_ST_NAME)
        headers[_ST_NAME] = f"{present}, {ours}" if present else ours
    return 0


# --- the opt-in features' seam --------------------------------------------------------------------


class _Skip:
    __slots__ = ()

    def __repr__(self):
        return "SKIP"


#: What ``features.begin``/``features.end`` return for a request that is not recorded at all.
SKIP = _Skip()
cdef object _SKIP = SKIP
cdef object _features = None
# ``_features`` again when it is a ``_features_c.Features``: the middlewares call its work through
# ``_seam`` (C function pointers, no Python call). One pointer, written whole: a thread reads
# either the old object or the new one, and ``_seam`` never changes once set.
cdef object _c_features = None

# The compiled features' C entry points: ``dp_features_api`` (dp_api.pxi).
cdef dp_features_api *_seam = NULL
cdef const char *_SEAM_NAME = "django_prometheus._core._features_c.SEAM"


def set_features(features):
    """Install the object that runs the opt-in HTTP features around each request; None turns them off.

    Read once per request, so the default path pays one pointer comparison.
    The protocol (``outer`` is True in the Before middleware, False in the After):

    - ``features.begin(request, outer)``: a state for ``end``, or ``SKIP``: this
      middleware records nothing of the request (path exclusions);
    - ``features.defer``: when true, the recorder's request-time counts wait for
      the response, so ``end`` can still exclude the request (view exclusions);
    - ``features.end(request, response, state, outer)``: ``SKIP`` drops a deferred
      request's counts; anything else records them;
    - ``features.abort(request, state, outer)``: ``get_response`` raised;
    - ``features.excluded(request)``: consulted by the After middleware's view,
      template-response and exception hooks while ``features`` is installed.

    Each method logs and swallows its own failures; one that raises anyway is
    logged here and the request is recorded as if no feature were on. The
    compiled ``Features`` (exactly that type) is called through its C entry points.
    """
    global _features, _c_features, _seam
    c_features = None
    if features is not None:
        try:
            seam = features._dp_c_seam
        except AttributeError:
            seam = None
        if (type(seam) is tuple and len(<tuple>seam) == 2 and type(features) is (<tuple>seam)[0]
                and PyCapsule_IsValid((<tuple>seam)[1], _SEAM_NAME)):
            _seam = <dp_features_api *> PyCapsule_GetPointer((<tuple>seam)[1], _SEAM_NAME)
            c_features = features
    _c_features = c_features
    _features = features


def get_features():
    """The object ``set_features`` installed, or None."""
    return _features


cdef inline bint _view_hook_excluded(request, match, name) except -1:
    # _hook_excluded for on_view, which hands the compiled features what it read of the match.
    if _features is _c_features:
        return _seam.view(_features, request, match, name)
    return _hook_excluded(request)


cdef inline bint _hook_excluded(request) except -1:
    # The After middleware's view, template and exception hooks, while features are on.
    features = _features
    if features is None:
        return False
    try:
        if features is _c_features:
            return _seam.excluded(features, request)
        return bool(features.excluded(request))
    except Exception:
        _log_failure("an exclusion rule")
        return False


# --- the recorders --------------------------------------------------------------------------------


cdef class _Recorder:
    """One middleware's recording around ``get_response``: ``_begin``, the clock, then ``_end``.

    ``_begin`` returns what ``_end`` needs of the request (the After recorder's
    method/transport entry), handed over in C by the middlewares' call; None
    makes ``_end`` work it out again.
    """

    cdef object _begin(self, request):
        return None

    # The deferred path (features whose exclusions wait for the view) splits _begin in two: the
    # request's own facts at once (_resolve), the counts once the request is known to be
    # recorded (_count, handed what _resolve returned); _drop when it is not.
    cdef object _resolve(self, request):
        return None

    cdef object _count(self, request, resolved):
        return self._begin(request)

    cdef int _drop(self, request) except -1:
        return 0

    cdef int _end(self, request, response, state, double started) except -1:
        return 0

    cdef int _abort(self, request) noexcept:
        # get_response raised (or the awaitable was thrown into, closed or dropped): forget the
        # request. Called with an exception pending: keeps it.
        return 0

    def _finish(self, request, response, recorded, double started):
        # The ASGI default path's end (``_http_await``): _end with what _begin returned.
        self._end(request, response, recorded, started)

    def _fail(self, request):
        self._abort(request)


cdef class BeforeRecorder(_Recorder):
    """What ``PrometheusBeforeMiddleware`` records: requests, responses, latency including middlewares."""

    cdef object _requests, _responses, _latency
    cdef ServerTiming _timing  # PROMETHEUS_SERVER_TIMING's app entry, or None

    def __init__(self, cells):
        self._requests = cells.requests_total
        self._responses = cells.responses_total
        self._latency = cells.requests_latency_before
        timing = getattr(cells, "server_timing", None)
        self._timing = timing if type(timing) is ServerTiming else None

    cdef object _begin(self, request):
        try:
            _inc(self._requests)
        except Exception:
            _log_failure("a request")
        return None

    cdef int _end(self, request, response, state, double started) except -1:
        cdef double end = dp_clock()
        try:
            _inc(self._responses)
            _observe(self._latency, end - started)
            if self._timing is not None:
                self._timing.write(request, response, end - started)
        except Exception:
            _log_failure("a response")
        return 0


cdef class _Kind:
    """The cells of one (sanitised method, transport) combination, and its sub-caches."""

    cdef readonly str method, transport
    cdef object by_method, by_transport
    cdef dict views, responses
    # The last outcome and (view, cell) entry looked up (None before the first); a reference
    # is read and written whole, so threads see one entry or another.
    cdef object last, last_view

    def __init__(self, cells, str method, str transport):
        self.method = method
        self.transport = transport
        self.by_method = cells.requests_by_method(method)
        self.by_transport = cells.requests_by_transport(transport)
        self.views = {}  # view -> (view, requests_by_view_transport_method cell)
        self.responses = {}  # (status, view, charset) -> _Outcome
        self.last = None
        self.last_view = None


cdef class _Outcome:
    """The cells one response increments, for one (method, status, view, charset)."""

    cdef object by_status, by_status_view_method, by_charset, latency
    cdef object status, view, charset  # its key in ``_Kind.responses``

    def __init__(self, cells, str method, status, view, charset):
        self.status, self.view, self.charset = status, view, charset
        status_label = str(status)
        self.by_status = cells.responses_by_status(status_label)
        self.by_status_view_method = cells.responses_by_status_view_method(status_label, view, method)
        self.by_charset = None if charset is None else cells.responses_by_charset(str(charset))
        self.latency = cells.requests_latency_by_view_method(view, method)


cdef str _HTTPS = "https"
cdef str _META = "META"


cdef class AfterRecorder(_Recorder):
    """What ``PrometheusAfterMiddleware`` records, with every label combination resolved once."""

    cdef object _cells
    cdef object _ajax, _request_body, _response_body, _streaming
    cdef object _settings, _response, _streaming_response, _base_charset, _response_content
    cdef object _streaming_content, _response_base, _scheme_sources, _secure_methods
    cdef Settings _fast_settings
    # The last request and response type seen: (cls, ...) records of _schemes and _types; the
    # last _Kind of each transport: a request's fresh method string is compared with its
    # method before it is hashed for a lookup. None before the first.
    cdef object _last_scheme, _last_type, _last_http, _last_https
    cdef dict _http, _https, _types, _schemes, _content_types, _templates, _exc_types, _exc_views
    cdef tuple _rules  # (record, family) of the specs with a ``record`` rule (``Spec.record``)
    cdef object _ignored  # PROMETHEUS_IGNORED_EXCEPTIONS: a tuple of classes, None when empty

    def __init__(self, cells):
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
        self._last_scheme = None
        self._last_type = None
        self._last_http = None
        self._last_https = None
        self._schemes = {}  # request type -> (type, (attribute, key, is META) of its scheme, or None)
        self._http = {}  # method -> _Kind, one dict per transport (only the nine methods are keys)
        self._https = {}
        self._types = {}
        self._content_types = {}
        self._templates = {}
        self._exc_types = {}
        self._exc_views = {}
        self._rules = tuple(getattr(cells, "rules", ()))
        self._ignored = getattr(cells, "ignored_exceptions", None) or None

    # -- request ---------------------------------------------------------------------------------

    cdef object _scheme_source(self, cls):
        last = self._last_scheme
        if last is not None and (<tuple>last)[0] is cls:
            return (<tuple>last)[1]
        record = self._schemes.get(cls)
        if record is None:
            source = None
            is_secure, scheme = self._secure_methods
            if cls.is_secure is is_secure and cls.scheme is scheme:
                for base, attr, key, get_scheme in self._scheme_sources:
                    if issubclass(cls, base) and cls._get_scheme is get_scheme:
                        source = (attr, key, attr == _META)
                        break
            record = self._schemes.setdefault(cls, (cls, source))
        self._last_scheme = record
        return (<tuple>record)[1]

    cdef object _default_charset(self):
        if self._fast_settings is not None:
            return self._fast_settings.DEFAULT_CHARSET
        return self._settings.DEFAULT_CHARSET

    cdef bint _is_secure(self, request, meta) except -1:
        # The transport rule is request.is_secure(); for Django's own request classes, with
        # no SECURE_PROXY_SSL_HEADER, that is the scheme the server passed, read directly
        # (from ``meta``, the request's META when the caller has it, for WSGIRequest).
        source = self._scheme_source(type(request))
        if source is None:
            return request.is_secure()
        if self._fast_settings is not None:
            proxy_header = self._fast_settings.SECURE_PROXY_SSL_HEADER
        else:
            proxy_header = self._settings.SECURE_PROXY_SSL_HEADER
        if proxy_header:
            return request.is_secure()
        if (<tuple>source)[2]:
            values = request.META if meta is None else meta
        else:
            values = getattr(request, (<tuple>source)[0])
        if type(values) is dict:
            scheme = (<dict>values).get((<tuple>source)[1])
        else:
            scheme = values.get((<tuple>source)[1])
        if scheme is None:
            # Not where Django's request keeps it (e.g. META replaced): ask the request.
            return request.is_secure()
        return _eq_str(scheme, _HTTPS)

    cdef _Kind _kind(self, request, meta):
        # The request's own method string is compared with the last kind's method, then looked
        # up: only the sanitised nine (and ``<invalid method>``) are ever keys, so a client
        # cannot grow the dict.
        method = request.method
        cdef bint secure = self._is_secure(request, meta)
        last = self._last_https if secure else self._last_http
        if last is not None and _same_str(method, (<_Kind>last).method):
            return <_Kind>last
        cdef dict kinds = self._https if secure else self._http
        kind = kinds.get(method) if type(method) is str else None
        if kind is None:
            label = sanitize_method(method)
            kind = kinds.get(label)
            if kind is None:
                kind = kinds.setdefault(label, _Kind(self._cells, label, "https" if secure else "http"))
        if secure:
            self._last_https = kind
        else:
            self._last_http = kind
        return <_Kind>kind

    cdef object _begin(self, request):
        cdef _Kind kind = None
        try:
            meta = request.META
            kind = self._kind(request, meta)
            # For on_view and a later _end on this thread (the middlewares' call hands _end
            # the kind it returns).
            _slot_set(dp_http_slot_get(), <void *>self, <PyObject *>request, <PyObject *>kind, NULL, NULL)
            self._count_request(kind, meta)
        except Exception:
            _log_failure("a request")
        return kind

    cdef inline int _count_request(self, _Kind kind, meta) except -1:
        # _begin's counts: the request's method and transport, ajax, body size.
        cdef double size
        _inc(kind.by_method)
        _inc(kind.by_transport)
        if type(meta) is dict:
            ajax = (<dict>meta).get("HTTP_X_REQUESTED_WITH")
            length = (<dict>meta).get("CONTENT_LENGTH")
        else:
            ajax = meta.get("HTTP_X_REQUESTED_WITH")
            length = meta.get("CONTENT_LENGTH")
        if ajax is not None and _eq_str(ajax, "XMLHttpRequest"):
            _inc(self._ajax)
        size = _body_size(length)
        if size >= 0:
            _observe(self._request_body, size)
        return 0

    cdef object _resolve(self, request):
        # _begin's kind and slot, without its counts: on_view and _end find both in the slot.
        # (kind, META) for _count, which then need not read META again; None if it failed.
        cdef _Kind kind
        try:
            meta = request.META
            kind = self._kind(request, meta)
            _slot_set(dp_http_slot_get(), <void *>self, <PyObject *>request, <PyObject *>kind, NULL, NULL)
            return (kind, meta)
        except Exception:
            _log_failure("a request")
        return None

    cdef object _count(self, request, resolved):
        # The deferred counts of a request _resolve saw; returns its kind, for _end.
        if type(resolved) is not tuple:
            return self._begin(request)
        kind = (<tuple>resolved)[0]
        try:
            self._count_request(<_Kind>kind, (<tuple>resolved)[1])
        except Exception:
            _log_failure("a request")
        return kind

    cdef int _drop(self, request) except -1:
        # An excluded request: let go of what _resolve (and on_view) put in the slot.
        cdef dp_http_slot *slot = dp_http_slot_get()
        if slot.recorder is <void *>self and slot.request is <PyObject *>request:
            _slot_clear(slot)
        return 0

    cdef int _abort(self, request) noexcept:
        # The slot must not keep a failed request (and what it references) alive until the
        # next request on this thread.
        cdef dp_http_slot *slot = dp_http_slot_get()
        cdef PyObject *exc_type
        cdef PyObject *exc_value
        cdef PyObject *exc_tb
        if slot.recorder is <void *>self and slot.request is <PyObject *>request:
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb)  # a release may run a finaliser
            _slot_clear_noexcept(slot)
            PyErr_Restore(exc_type, exc_value, exc_tb)
        return 0

    # -- view ------------------------------------------------------------------------------------

    def on_view(self, request, view_func=None, view_args=None, view_kwargs=None):
        """``process_view``: count the request by (view, transport, method)."""
        self._view(request)

    cdef int _view(self, request) except -1:
        cdef _Kind kind
        cdef dp_http_slot *slot
        try:
            match = getattr(request, "resolver_match", None)
            if match is None:
                return 0
            name = match.view_name
            view = _hook_view(name)
            if _features is not None and _view_hook_excluded(request, match, name):
                return 0
            slot = dp_http_slot_get()
            if slot.recorder is <void *>self and slot.request is <PyObject *>request:
                kind = <_Kind>slot.kind
                if slot.match is not <PyObject *>match:  # what _end reads again, if unchanged
                    _slot_set(slot, <void *>self, <PyObject *>request, <PyObject *>kind,
                              <PyObject *>match, <PyObject *>name)
            else:
                kind = self._kind(request, None)
            last = kind.last_view
            if last is not None and _same_str(view, (<tuple>last)[0]):
                entry = <tuple>last
            else:
                entry = kind.views.get(view)
                if entry is None:
                    cell = self._cells.requests_by_view_transport_method(view, kind.transport, kind.method)
                    entry = kind.views.setdefault(view, (view, cell))
                kind.last_view = entry
            _inc((<tuple>entry)[1])
        except Exception:
            _log_failure("a view")
        return 0

    # -- response --------------------------------------------------------------------------------

    cdef tuple _type_info(self, cls):
        last = self._last_type
        if last is not None and (<tuple>last)[0] is cls:
            return <tuple>last
        info = self._types.get(cls)
        if info is None:
            fast_charset = issubclass(cls, self._response_base) and cls.charset is self._base_charset
            streaming = _STREAMING_ASK
            if issubclass(cls, self._response) and cls.content is self._response_content:
                content = _CONTENT_FAST
                if cls.streaming is False:
                    streaming = _STREAMING_NO
            elif issubclass(cls, self._streaming_response) and cls.content is self._streaming_content:
                content = _CONTENT_NONE
                if cls.streaming is True:
                    streaming = _STREAMING_YES
            else:
                content = _CONTENT_GENERIC
            info = self._types.setdefault(cls, (cls, fast_charset, content, streaming))
        self._last_type = info
        return <tuple>info

    cdef object _charset_of(self, response, bint fast):
        # The charset rule, without Django's property and regex for its own response classes.
        cdef Settings known
        if fast:
            value = response._charset
            if value is not None:
                return value
            store = getattr(response.headers, "_store", None)
            if type(store) is dict:
                entry = (<dict>store).get("content-type")
                if entry is None:
                    content_type = None
                elif type(entry) is tuple and len(<tuple>entry) == 2:
                    content_type = (<tuple>entry)[1]
                else:
                    content_type = entry[1]
                if not content_type:
                    return self._default_charset()
                known = self._fast_settings
                if known is not None and _eq_str(content_type, known.default_content_type):
                    # What HttpResponse writes by default: no hashing of a fresh string.
                    value = known.default_content_type_charset
                    return known.DEFAULT_CHARSET if value is None else value
                value = self._content_types.get(content_type, _MISSING)
                if value is _MISSING:
                    matched = _CHARSET_RE.search(content_type)
                    value = matched["charset"].replace('"', "") if matched else None
                    if len(self._content_types) < _CONTENT_TYPE_CACHE_MAX:
                        self._content_types[content_type] = value
                return self._default_charset() if value is None else value
        return charset(response)

    cdef int _end(self, request, response, state, double started) except -1:
        # The response: which outcome (kind, status, view, charset), its counts, the body size,
        # the latency; then the specs' own rules.
        cdef double end = dp_clock()
        cdef _Kind kind
        cdef _Outcome outcome
        cdef tuple info
        cdef int streaming
        cdef dp_http_slot *slot
        cdef bint mine
        try:
            # What _begin and on_view left in the slot, if it is this request's.
            slot = dp_http_slot_get()
            mine = slot.recorder is <void *>self and slot.request is <PyObject *>request
            if type(state) is _Kind:
                kind = <_Kind>state  # handed over by the middlewares' call
            elif mine:
                kind = <_Kind>slot.kind
            else:
                kind = self._kind(request, None)
            view = self._response_view_of(request, slot, mine)
            info = self._type_info(type(response))
            outcome = self._outcome(kind, response.status_code, view, self._charset_of(response, info[1]))
            _inc(outcome.by_status)
            _inc(outcome.by_status_view_method)
            if outcome.by_charset is not None:
                _inc(outcome.by_charset)
            streaming = info[3]
            if streaming == _STREAMING_YES or (streaming == _STREAMING_ASK and getattr(response, "streaming", False)):
                _inc(self._streaming)
            self._observe_body(response, info[2])
            _observe(outcome.latency, end - started)
        except Exception:
            _log_failure("a response")
        if self._rules:
            for record, family in self._rules:
                try:
                    record(family, request, response)
                except Exception:
                    _log_failure("a response")
        return 0

    cdef inline object _response_view_of(self, request, dp_http_slot *slot, bint mine):
        # The ``view`` label: the name on_view read, if the match is unchanged; the slot is
        # emptied (the request is done).
        match = getattr(request, "resolver_match", None)
        if match is None:
            view = _UNNAMED
        elif mine and slot.match is <PyObject *>match:
            view = _response_view(<object>slot.view)
        else:
            view = _response_view(match.view_name)
        if mine:
            _slot_clear(slot)
        return view

    cdef inline _Outcome _outcome(self, _Kind kind, status, view, label):
        # The cells of (status, view, charset) under the kind: the last one, else looked up once.
        last = kind.last
        if last is not None and _same((<_Outcome>last).status, status) and _same_key(
            view, (<_Outcome>last).view
        ) and _same((<_Outcome>last).charset, label):
            return <_Outcome>last
        key = (status, view, label)
        found = kind.responses.get(key)
        if found is None:
            found = kind.responses.setdefault(key, _Outcome(self._cells, kind.method, status, view, label))
        kind.last = found
        return <_Outcome>found

    cdef inline int _observe_body(self, response, int content) except -1:
        # The response body size: HttpResponse's chunks summed (no join), none when streaming.
        cdef Py_ssize_t total
        if content == _CONTENT_FAST:
            container = response._container
            if type(container) is list:
                total = 0
                for chunk in <list>container:
                    total += len(chunk)
                _observe(self._response_body, total)
            else:
                _observe(self._response_body, sum(map(len, container)))
        elif content == _CONTENT_GENERIC:
            size = response_body_size(response)
            if size is not None:
                _observe(self._response_body, size)
        return 0

    # -- rarer hooks -----------------------------------------------------------------------------

    def on_template_response(self, request, response):
        """``process_template_response``: count the response by template name."""
        try:
            name = template_name(response)
            if name is not None and not _hook_excluded(request):
                cell = self._templates.get(name)
                if cell is None:
                    cell = self._templates.setdefault(name, self._cells.responses_by_templatename(name))
                _inc(cell)
        except Exception:
            _log_failure("a template response")
        return response

    def on_exception(self, request, exception):
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
            _inc(cell)
            view = hook_view_name(request)
            if view is not None:
                cell = self._exc_views.get(view)
                if cell is None:
                    cell = self._exc_views.setdefault(view, self._cells.exceptions_by_view(view))
                _inc(cell)
        except Exception:
            _log_failure("an exception")


# --- the middlewares' call ------------------------------------------------------------------------


cdef object _NO_STATE = object()  # features.begin raised: record as if no feature were on


cdef object _features_begin(features, request, bint outer, int *flags):
    # The state for _features_finish; flags[0]: 1 defer the recorder's request-time counts,
    # 2 tell the features when a skipped request is done (_features_skipped).
    flags[0] = 0
    try:
        if features is _c_features:
            return _seam.begin(features, request, outer, flags)
        state = features.begin(request, outer)
    except Exception:
        _log_failure("a request (opt-in features)")
        return _NO_STATE
    if state is not _SKIP:
        try:
            if features.defer:
                flags[0] = 1
        except Exception:
            _log_failure("a request (opt-in features)")
    return state


cdef int _features_skipped(features, request, bint outer) except -1:
    # A skipped request is done (flag 2): the compiled features forget it.
    try:
        _seam.abort(features, request, _SKIP, outer)
    except Exception:
        _log_failure("a request (opt-in features)")
    return 0


cdef int _features_abort(features, request, state, bint outer) except -1:
    if state is _NO_STATE:
        return 0
    try:
        if features is _c_features:
            _seam.abort(features, request, state, outer)
        else:
            features.abort(request, state, outer)
    except Exception:
        _log_failure("a failed request (opt-in features)")
    return 0


cdef int _features_finish(features, _Recorder recorder, request, response, state, bint outer, bint defer,
                        recorded, double started) except -1:
    skip = None
    if state is not _NO_STATE:
        try:
            if features is _c_features:
                skip = _seam.end(features, request, response, state, outer)
            else:
                skip = features.end(request, response, state, outer)
        except Exception:
            _log_failure("a response (opt-in features)")
    if defer:
        if skip is _SKIP:
            recorder._drop(request)
            return 0
        recorded = recorder._count(request, recorded)
    recorder._end(request, response, recorded, started)
    return 0


cdef class Middleware:
    """The base of both middlewares: ``__call__`` records around ``get_response`` in C.

    ``_recorder`` None selects the extension path: the subclass' ``_call_hooks``
    and ``_acall_hooks`` (upstream's hook by hook).
    """

    cdef public object get_response
    cdef public bint async_mode
    cdef public _Recorder _recorder
    cdef void *_vectorcall  # Django's call of a middleware, without an argument tuple (see below)

    def __cinit__(self, *args, **kwargs):
        self._vectorcall = dp_vectorcall_entry(False)

    def __call__(self, request):
        return self._call(request)

    cdef object _call(self, request):
        cdef _Recorder recorder = self._recorder
        if self.async_mode:
            if recorder is None or _features is not None:
                return self.__acall__(request)
            return _acall_default(self, recorder, request)
        if recorder is None:
            return self._call_hooks(request)
        if _features is not None:
            return self._call_features(request, recorder, _features)
        recorded = recorder._begin(request)
        cdef double started = dp_clock()
        try:
            response = self.get_response(request)
        except BaseException:
            recorder._abort(request)
            raise
        recorder._end(request, response, recorded, started)
        return response

    async def __acall__(self, request):
        cdef _Recorder recorder = self._recorder
        if recorder is None:
            return await self._acall_hooks(request)
        cdef double started
        cdef bint outer
        cdef int flags = 0
        features = _features
        if features is None:
            recorded = recorder._begin(request)
            started = dp_clock()
            response = await self.get_response(request)
            recorder._end(request, response, recorded, started)
            return response
        outer = type(recorder) is BeforeRecorder or isinstance(recorder, BeforeRecorder)
        state = _features_begin(features, request, outer, &flags)
        if state is _SKIP:
            if flags & 2:
                try:
                    return await self.get_response(request)
                finally:
                    _features_skipped(features, request, outer)
            return await self.get_response(request)
        recorded = recorder._resolve(request) if flags & 1 else recorder._begin(request)
        started = dp_clock()
        try:
            response = await self.get_response(request)
        except BaseException:
            recorder._abort(request)  # the slot must not keep the failed request alive
            _features_abort(features, request, state, outer)
            raise
        _features_finish(features, recorder, request, response, state, outer, flags & 1, recorded, started)
        return response

    cdef object _call_features(self, request, _Recorder recorder, features):
        cdef bint outer = type(recorder) is BeforeRecorder or isinstance(recorder, BeforeRecorder)
        cdef int flags = 0
        cdef double started
        state = _features_begin(features, request, outer, &flags)
        if state is _SKIP:
            if flags & 2:
                try:
                    return self.get_response(request)
                finally:
                    _features_skipped(features, request, outer)
            return self.get_response(request)
        recorded = recorder._resolve(request) if flags & 1 else recorder._begin(request)
        started = dp_clock()
        try:
            response = self.get_response(request)
        except BaseException:
            recorder._abort(request)  # the slot must not keep the failed request alive
            _features_abort(features, request, state, outer)
            raise
        _features_finish(features, recorder, request, response, state, outer, flags & 1, recorded, started)
        return response

    def _async_hooks(self):
        """The After middleware's ``process_view`` and ``process_template_response`` under ASGI.

        Awaitable-returning callables, so Django adds no ``sync_to_async``; the view
        hook records when called and returns an awaitable already done (no coroutine
        per request). The caller marks them as coroutine functions.
        """
        return _AsyncView(self, <AfterRecorder>self._recorder), self._process_template_response_async

    # The After middleware's template hook under ASGI: a native coroutine, so Django adds no
    # sync_to_async (its view hook is ``_AsyncView``).
    async def _process_template_response_async(self, request, response):
        return (<AfterRecorder>self._recorder).on_template_response(request, response)


# --- the default path under ASGI ------------------------------------------------------------------
#
# A Cython ``async def`` costs a coroutine, its closure, an ``__await__`` wrapper per await and an
# exception-state save per resume. Instead the middlewares' call records the request, calls
# ``get_response`` and returns ``_http_await.record_around``'s coroutine (Python bytecode: CPython
# resumes native coroutines frame to frame), which records the response through ``_finish``.

from ._http_await import record_around as _record_around


cdef object _acall_default(Middleware mw, _Recorder recorder, request):
    recorded = recorder._begin(request)
    cdef double started = dp_clock()
    try:
        awaitable = mw.get_response(request)
    except BaseException:
        recorder._abort(request)
        raise
    return _record_around(recorder, request, awaitable, recorded, started)


@cython.final
cdef class _Done:
    """An awaitable already done, with None as its result."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        # Exhausted at once: Cython returns NULL with no StopIteration made, so the await's
        # result is None for the same count as a hand-set tp_iternext (measured).
        raise StopIteration


cdef _Done _DONE = _Done()


@cython.final
cdef class _AsyncView:
    """The After middleware's ``process_view`` under ASGI: records, returns an awaitable already done."""

    cdef AfterRecorder recorder
    cdef readonly object __self__  # the middleware, as for a bound method
    cdef dict __dict__  # for the coroutine-function mark
    cdef void *_vectorcall

    def __cinit__(self, *args, **kwargs):
        self._vectorcall = dp_vectorcall_entry(True)

    def __init__(self, middleware, AfterRecorder recorder):
        self.__self__ = middleware
        self.recorder = recorder

    def __call__(self, request, view_func=None, view_args=None, view_kwargs=None):
        return self._call(request)

    cdef object _call(self, request):
        self.recorder._view(request)
        return _DONE


# --- vectorcall ------------------------------------------------------------------------------------
#
# Django calls a middleware with one argument and the view hook with four: the vectorcall entries
# (dp_typeslots.h) take them as they are and call the cdef ``_call``.

cdef object _middleware_call(object self, object request):
    return (<Middleware>self)._call(request)


cdef object _async_view_call(object self, object request):
    return (<_AsyncView>self)._call(request)


cdef int _enable_vectorcall() except -1:
    # The entry's offset in the object, read off one instance of each type.
    cdef Middleware middleware = Middleware.__new__(Middleware)
    cdef _AsyncView view = _AsyncView.__new__(_AsyncView)
    dp_vectorcall_enable(Middleware, False, <void *>_middleware_call,
                         <char *>&middleware._vectorcall - <char *><void *>middleware)
    dp_vectorcall_enable(_AsyncView, True, <void *>_async_view_call,
                         <char *>&view._vectorcall - <char *><void *>view)
    return 0


_enable_vectorcall()


def _cpython_facts():
    """What dp_typeslots.h and dp_tls.h assume and did, for tests/test_core_cpython.py to check."""
    return {
        "Middleware": dp_typeslots_facts(Middleware),
        "_AsyncView": dp_typeslots_facts(_AsyncView),
        "slot": <size_t><void *>dp_http_slot_get(),
    }

