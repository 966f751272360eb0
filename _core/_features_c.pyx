# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""Compiled opt-in HTTP features: the per-request work of routes, exclusions, in-flight, queue time.

The pure-Python twin is ``_features_py.py``; keep both in step (same names, same
behaviour; ``tests/test_core_features.py`` runs both side by side). A leaf:
it imports nothing from Django or django_prometheus.
``django_prometheus.http.features`` reads the settings, creates the families and
hands in their ``labels`` functions (or one cell); ``Features`` is the object
``_http.set_features`` installs. It resolves the cells of a label combination
once and afterwards only increments them; every entry point logs and swallows
its own failures (instrumentation never breaks a request).
"""

import logging
from time import time as _time_time

cimport cython
from cpython.dict cimport PyDict_DelItem, PyDict_GetItem, PyDict_SetItem
from cpython.object cimport Py_TYPE, PyObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.contextvars cimport get_value
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

from ._http_c import NO_CELL, SKIP

cdef extern from "dp_clock.h":
    double dp_clock() nogil
    double dp_wall() nogil

cdef extern from *:
    double PyOS_string_to_double(const char *s, char **endptr, PyObject *overflow_exception) except? -1.0

# The cells' C entry points and types (_api, _Counter, ..., _Gauge), as _http_c has them; the
# seam's entry points (dp_features_api).
include "dp_cells_client.pxi"
cdef object _NO_CELL = NO_CELL

__all__ = [
    "DO_NOT_TRACK",
    "INNER",
    "KEY",
    "PATH_CACHE_MAX",
    "QUEUE_MAX_SECONDS",
    "ROOT",
    "UNMATCHED",
    "Features",
    "SpanIds",
    "owned",
    "queue_seconds",
    "route",
    "status_label",
]

logger = logging.getLogger("django_prometheus.middleware")
cdef str _FAILURE = "django_prometheus: could not record the HTTP metrics of %s (opt-in features)"
# _inc, _observe, _gauge_add, _log_failure: shared with _http_c.
include "dp_helpers.pxi"

#: The ``route`` label when no URL pattern matched (a 404 from the resolver).
UNMATCHED = "<unmatched>"
#: The ``route`` label of the empty pattern (``path("", ...)``, the site's root, also inside an
#: ``include()`` mounted at ""): Django's route for it is "", which must not read as "no match".
ROOT = "/"
#: The longest queue time observed; beyond it the header is someone else's clock or a replay.
QUEUE_MAX_SECONDS = 3600.0
#: The request's attribute that carries the features' state when the owners' table cannot
#: (an excluded path, a request type with its own ``__hash__``, a full table).
KEY = "_prometheus_features"
#: The view attribute ``do_not_track`` sets.
DO_NOT_TRACK = "_prometheus_do_not_track"
#: Path exclusion results kept for recent paths (then the table starts again: hostile paths
#: cost a regex search each, never memory).
PATH_CACHE_MAX = 1024

cdef str _UNMATCHED = UNMATCHED
cdef str _ROOT = ROOT
cdef str _KEY = KEY
cdef str _DO_NOT_TRACK = DO_NOT_TRACK
cdef object _SKIP = SKIP
cdef dict _METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")}
cdef str _INVALID = "<invalid method>"
cdef dict _GROUPS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
cdef Py_ssize_t _STATUS_CACHE_MAX = 1024
cdef Py_ssize_t _FUNC_CACHE_MAX = 4096
cdef Py_ssize_t _NAMES_CACHE_MAX = 64  # view names per view function (a view routed under many names)
cdef Py_ssize_t _PATH_CACHE_MAX = PATH_CACHE_MAX
cdef Py_ssize_t _PATH_KEY_MAX = 512  # longer paths are searched, not kept
cdef Py_ssize_t _OWNED_MAX = 1 << 16
cdef object _MISSING = object()
cdef object _TRUE = True  # compared by pointer (a bare ``True`` in C is the integer 1)


class _Inner:
    __slots__ = ()

    def __repr__(self):
        return "INNER"


#: ``begin``'s state in the inner middleware when the outer one owns the request.
INNER = _Inner()
cdef object _INNER = INNER

# The requests an outer middleware owns, while it does: request -> _State. The inner
# middleware and the hooks find the state here instead of on a request attribute: an extra
# attribute turns a request's inline values into a dict, slowing every later attribute read of
# Django's and ours. Keyed by identity (only request types with object's own hash), so it is
# right under threads, ASGI interleaving and nested requests; the owner removes its entry at
# its end or abort. Shared by every ``Features`` (one installed mid-request finds the other's).
cdef class _State
cdef dict _owned = {}
# Set once a state went on a request attribute instead: from then on a lookup that misses the
# table also reads the attribute.
cdef bint _on_attributes = False
cdef void *_object_hash = <void *> Py_TYPE(_MISSING).tp_hash  # object's own


def owned():
    """How many requests the features' table holds now (tests: it empties as requests end)."""
    return len(_owned)


cdef inline bint _keyable(request) noexcept:
    return <void *> Py_TYPE(request).tp_hash == _object_hash


cdef inline object _find(request):
    # The state the outer middleware left: a _State, True (an excluded path) or None.
    cdef PyObject *found
    if _keyable(request):
        found = PyDict_GetItem(_owned, request)
        if found is not NULL:
            return <object> found
    if _on_attributes:
        return getattr(request, _KEY, None)
    return None


cdef int _own(request, state) except -1:
    global _on_attributes
    if type(state) is _State and _keyable(request) and len(_owned) < _OWNED_MAX:
        PyDict_SetItem(_owned, request, state)
        (<_State> state).keyed = True
    else:
        _on_attributes = True
        # getattr/setattr, not request.__dict__: that would turn the request's inline
        # attribute values into a dict, slowing every later attribute access of Django's.
        setattr(request, _KEY, state)
    return 0


cdef bint _own_skip(request) except -1:
    # An excluded path, in the table (the C seam's middleware takes it out: ``_forget``).
    if _keyable(request) and len(_owned) < _OWNED_MAX:
        PyDict_SetItem(_owned, request, True)
        return True
    return False


cdef int _forget(request) except -1:
    if PyDict_GetItem(_owned, request) == <PyObject *> _TRUE:
        PyDict_DelItem(_owned, request)
    return 0


cdef inline int _disown(request, _State state) except -1:
    # Only this state's owner put it in the table (a second begin of the request finds it and
    # is INNER), so the entry under ``request`` is this state.
    if state.keyed:
        state.keyed = False
        try:
            PyDict_DelItem(_owned, request)
        except KeyError:
            pass
    return 0


cpdef str route(request):
    """The ``route`` label: the URL pattern that matched (``resolver_match.route``), else ``<unmatched>``.

    Django joins the patterns of includes into ``route`` itself (namespaces do
    not appear in it); a regex pattern is its regex; the empty pattern (the
    root) is ``/``. Never the raw path.
    """
    match = getattr(request, "resolver_match", None)
    if match is None:
        return _UNMATCHED
    return _match_route(match)


cdef inline str _match_route(match):
    value = getattr(match, "route", None)
    if type(value) is not str:
        return _UNMATCHED
    return <str>value if value else _ROOT


cpdef str status_label(status, bint group):
    """The ``status`` label of the route counter: the code, or its class (``2xx``) when ``group``."""
    if group and type(status) is int:
        found = _GROUPS.get(status // 100)
        if found is not None:
            return <str>found
    return str(status)


def queue_seconds(value, double now):
    """Seconds a request waited before Django saw it, from ``X-Request-Start``/``X-Queue-Start``.

    ``t=`` prefix optional; seconds, milliseconds or microseconds since the
    epoch, told apart by magnitude (nginx ``t=${msec}``, Heroku milliseconds,
    HAProxy microseconds). None when absent, unparsable, negative or over one hour.
    """
    cdef double waited = _queue_seconds(value, now)
    return None if waited < 0.0 else waited


cdef double[23] _POW10
cdef int _i
for _i in range(23):
    _POW10[_i] = 10.0 ** _i


cdef double _stamp(str value) except? -2.0:
    # The header's number, -1.0 when unparsable. The forms proxies write (digits, one point)
    # are read in place, without slicing ``t=`` off into a new string (within a unit of the
    # last place of what float() reads); anything else float() decides.
    cdef Py_ssize_t size, i
    cdef const char *text = PyUnicode_AsUTF8AndSize(value, &size)
    cdef char *stop
    cdef char c
    cdef double stamp
    cdef long long whole = 0, fraction = 0
    cdef int digits = 0, decimals = 0
    cdef bint point = False
    if size >= 2 and text[0] == b't' and text[1] == b'=':
        text += 2
        size -= 2
    i = 0
    while i < size:
        c = text[i]
        if b'0' <= c <= b'9':
            digits += 1
            if digits > 18:
                break
            if point:
                fraction = fraction * 10 + (c - 48)
                decimals += 1
            else:
                whole = whole * 10 + (c - 48)
        elif c == b'.' and not point:
            point = True
        else:
            break
        i += 1
    if i == size and digits > 0:
        return <double> whole + <double> fraction / _POW10[decimals]
    if size > 0 and (b'0' <= text[0] <= b'9' or text[0] == b'.'):
        stamp = PyOS_string_to_double(text, &stop, NULL)
        if stop == text + size:
            return stamp
    try:
        return float(value[2:] if value.startswith("t=") else value)
    except ValueError:
        return -1.0


cdef double _queue_seconds(value, double now) except? -2.0:
    # -1.0: not observed.
    cdef double stamp, waited
    if type(value) is not str or len(<str>value) == 0 or len(<str>value) > 40:
        return -1.0
    stamp = _stamp(<str>value)
    if not stamp > 0.0 or stamp > 1.7976931348623157e308:  # nan, negative, zero or inf
        return -1.0
    if stamp > 1e14:
        stamp /= 1e6
    elif stamp > 1e11:
        stamp /= 1e3
    waited = now - stamp
    if 0.0 <= waited <= 3600.0:
        return waited
    return -1.0


cdef bint _marked(func) except -1:
    # ``do_not_track`` on the view function, or on the class behind ``as_view()`` (Django, DRF).
    if getattr(func, _DO_NOT_TRACK, False):
        return True
    for owner in (getattr(func, "view_class", None), getattr(func, "cls", None)):
        if owner is not None and getattr(owner, _DO_NOT_TRACK, False):
            return True
    return False


@cython.no_gc  # it refers to a cell, a method string and a DB token: no cycle through it
@cython.freelist(8)  # one a request: reused, not allocated (Cython turns this off without the GIL)
cdef class _State:
    """One request the features own: when it began, its method, its in-flight cell, its DB token.

    Also the in-flight gauge's closer: ``response.close()`` calls it (once).
    """

    cdef readonly str method
    cdef readonly double started
    cdef double queued  # < 0: none; observed once the view is known not to be excluded
    cdef int view_excluded  # -1: not decided yet (the view exclusions, decided once a request)
    cdef bint keyed  # in the owners' table
    cdef object inflight
    cdef object db
    cdef object cache  # None, or the request's cache accounting (Server-Timing)
    cdef object route  # None, or the route the view hook read of the resolver match

    def __call__(self):
        self.release()

    cdef void release(self):
        cell = self.inflight
        self.inflight = None
        if cell is not None:
            try:
                _gauge_add(cell, -1.0)
            except Exception:
                _log_failure("an in-flight request")


cdef class _RouteMethod:
    cdef object duration
    cdef dict statuses


@cython.final
cdef class _ViewRule:
    # The view exclusions of one view function: ``do_not_track``, then by view name (bounded).
    cdef bint marked
    cdef dict names


cdef class Features:
    """What both middlewares call around each request (``_http.set_features``' protocol).

    ``config`` attributes (None/empty: that feature is off): ``route_requests``
    and ``route_duration`` (``labels`` of the two route families),
    ``group_status``, ``inflight`` (``labels`` of the gauge), ``queue`` (the
    histogram's cell), ``exclude_paths`` (a compiled regex, searched in
    ``path_info``), ``exclude_views`` (URL names, namespaced names, dotted view
    paths), ``defer`` (view exclusions may apply), ``db_begin``/``db_end``
    (per-request DB accounting), ``db_discard`` (stop it without observing),
    ``cache_begin``/``cache_end`` (per-request cache accounting) and ``server_timing``
    (called at the end with the request, response, seconds, DB and cache accounting).
    The compiled middlewares call the same work through ``_dp_c_seam`` (C, no
    Python calls); the methods below are the protocol for everything else.
    """

    cdef object _route_requests, _route_duration, _inflight, _queue, _paths_search
    cdef object _db_begin, _db_end, _db_discard, _timing, _cache_begin, _cache_end
    cdef bint _group, _defer
    cdef frozenset _exclude_views
    cdef tuple _last_view  # (view function, view name, excluded) of the last view decided
    cdef tuple _last_method  # (method label, the request's method string, in-flight cell or None)
    cdef tuple _last_route  # (route, method label, status, _RouteMethod, status cell)
    cdef dict _routes, _inflight_cells, _statuses, _funcs, _paths

    def __init__(self, config):
        self._route_requests = config.route_requests
        self._route_duration = config.route_duration
        self._group = bool(config.group_status)
        self._inflight = config.inflight
        self._queue = config.queue
        paths = config.exclude_paths
        self._paths_search = None if paths is None else paths.search
        self._exclude_views = frozenset(config.exclude_views or ())
        self._defer = bool(config.defer)
        self._db_begin = config.db_begin
        self._db_end = config.db_end
        self._db_discard = getattr(config, "db_discard", None)
        self._timing = getattr(config, "server_timing", None)
        self._cache_begin = getattr(config, "cache_begin", None)
        self._cache_end = getattr(config, "cache_end", None)
        self._routes = {}
        self._inflight_cells = {}
        self._statuses = {}
        self._funcs = {}
        self._paths = {}

    @property
    def defer(self):
        return self._defer

    @property
    def _dp_c_seam(self):
        # ``_http_c.set_features`` takes the C entry points for exactly this type.
        return (Features, _SEAM)

    def cache_sizes(self):
        """How many entries each of the bounded caches holds (tests: hostile input grows none)."""
        return {"paths": len(self._paths), "views": len(self._funcs), "statuses": len(self._statuses)}

    # -- exclusions ------------------------------------------------------------------------------

    def path_excluded(self, request):
        """Whether ``PROMETHEUS_EXCLUDE_PATHS`` excludes the request (decided before the view resolves)."""
        if self._paths_search is None:
            return False
        state = _find(request)
        if state is not None:
            return state is True
        return self._path_excluded(getattr(request, "path_info", None))

    cdef bint _path_excluded(self, path) except -1:
        # The regex's answer for ``path``, kept for recent paths (bounded: see PATH_CACHE_MAX).
        cdef PyObject *found
        if type(path) is not str:
            return False
        found = PyDict_GetItem(self._paths, path)
        if found is not NULL:
            return found == <PyObject *> _TRUE
        excluded = self._paths_search(path) is not None
        if len(<str> path) <= _PATH_KEY_MAX:
            if len(self._paths) >= _PATH_CACHE_MAX:
                self._paths.clear()
            self._paths[path] = excluded
        return excluded

    def view_excluded(self, request):
        """Whether the resolved view is excluded (``do_not_track`` or ``PROMETHEUS_EXCLUDE_VIEWS``)."""
        return self._view_excluded(getattr(request, "resolver_match", None))

    cdef bint _view_excluded(self, match, name=_MISSING) except -1:
        # Decided once per (view function, view name): the rule reads four attributes of the
        # match and three set memberships; the answer is a dict lookup after the first time,
        # and two compares for the same view as the last request's. ``name``: the match's
        # view_name when the caller read it already.
        cdef _ViewRule rule
        cdef PyObject *found
        cdef tuple seen
        if match is None:
            return False
        func = match.func
        if name is _MISSING:
            name = match.view_name
        seen = self._last_view
        if seen is not None and seen[0] is func and seen[1] is name:
            return seen[2] is _TRUE
        excluded = self._rule_excluded(match, func, name)
        self._last_view = (func, name, excluded)
        return excluded

    cdef object _rule_excluded(self, match, func, name):
        cdef _ViewRule rule
        cdef PyObject *found
        try:
            found = PyDict_GetItem(self._funcs, func)
        except TypeError:  # an unhashable view callable
            return _marked(func) or self._named(match)
        if found is NULL:
            rule = _ViewRule.__new__(_ViewRule)
            rule.marked = _marked(func)
            rule.names = {}
            if len(self._funcs) >= _FUNC_CACHE_MAX:
                self._funcs.clear()
            self._funcs[func] = rule
        else:
            rule = <_ViewRule> found
        if rule.marked:
            return True
        if not self._exclude_views:
            return False
        if type(name) is not str:
            return self._named(match)
        found = PyDict_GetItem(rule.names, name)
        if found is not NULL:
            return <object> found
        excluded = self._named(match)
        if len(rule.names) >= _NAMES_CACHE_MAX:
            rule.names.clear()
        rule.names[name] = excluded
        return excluded

    cdef bint _named(self, match) except -1:
        views = self._exclude_views
        return bool(views) and (
            match.view_name in views
            or match.url_name in views
            or getattr(match, "_func_path", None) in views
        )

    cdef bint _decided(self, request, state) except -1:
        # The view exclusions, decided once per request (hooks, inner and outer end ask in turn).
        cdef _State st
        if not self._defer:
            return False
        if type(state) is not _State:
            state = _find(request)
            if type(state) is not _State:
                return state is True or self._view_excluded(getattr(request, "resolver_match", None))
        st = <_State>state
        if st.view_excluded < 0:
            match = getattr(request, "resolver_match", None)
            if match is None:
                return False  # not resolved (yet): decide later
            st.view_excluded = self._view_excluded(match)
        return st.view_excluded

    cdef bint _view_hook(self, request, match, name) noexcept:
        # _excluded for the After middleware's view hook, which read the match and its view
        # name already.
        cdef _State st
        try:
            state = self._state_or_excluded(request)
            if state is True:
                return True
            if type(state) is _State and (self._route_requests is not None or self._db_end is not None):
                # The route, for _end: Django resolves a request once, before the view hooks.
                (<_State> state).route = _match_route(match)
            if not self._defer:
                return False
            if type(state) is not _State:
                return self._view_excluded(match, name)
            st = <_State> state
            if st.view_excluded < 0:
                st.view_excluded = self._view_excluded(match, name)
            return st.view_excluded
        except Exception:
            _log_failure("an exclusion rule")
            return False

    def excluded(self, request):
        """The After middleware's hooks: whether this request is recorded in no HTTP family."""
        return self._excluded(request)

    cdef object _state_or_excluded(self, request):
        # The request's state in the owners' table; True when its path is excluded: the outer
        # middleware skipped it, or (not owned: no outer middleware) its path matches.
        state = _find(request)
        if state is None and self._paths_search is not None:
            if self._path_excluded(getattr(request, "path_info", None)):
                return True
        return state

    cdef bint _excluded(self, request) noexcept:
        try:
            state = self._state_or_excluded(request)
            if state is True:
                return True
            return self._decided(request, state)
        except Exception:
            _log_failure("an exclusion rule")
            return False

    # -- the protocol ----------------------------------------------------------------------------

    def begin(self, request, bint outer):
        """A state for ``end``; ``SKIP`` for an excluded path."""
        return self._begin(request, NULL)

    cdef object _begin(self, request, int *skipped):
        # ``skipped`` (the C seam): an excluded path goes in the owners' table, and
        # ``skipped[0]`` tells the middleware to take it out again (``_forget``) when it is done;
        # NULL (the Python protocol, which has no such call): on the request's attribute.
        cdef _State state = None
        try:
            decided = self._not_ours(request, skipped)
            if decided is not None:
                return decided
            state = self._new_state(request)
            if self._queue is not None:
                state.queued = self._queued(request.META)
            if self._db_begin is not None:
                state.db = self._db_begin()
            if self._cache_begin is not None:
                state.cache = self._cache_begin()
            _own(request, state)
            return state
        except Exception:
            _log_failure("a request")
            if state is not None:
                state.release()
            return _INNER  # record the upstream families as if no feature were on

    cdef object _not_ours(self, request, int *skipped):
        # ``_INNER`` or ``_SKIP`` when the outer middleware began the request (it owns it),
        # ``_SKIP`` for an excluded path (owned here, as ``skipped`` says); None: ours to begin.
        found = _find(request)
        if found is not None:
            return _SKIP if found is True else _INNER
        if self._paths_search is not None and self._path_excluded(request.path_info):
            if skipped is not NULL and _own_skip(request):
                skipped[0] = 1
            else:
                _own(request, True)
            return _SKIP
        return None

    cdef _State _new_state(self, request):
        # The request's label method and its in-flight cell (counted up here). The last request's
        # method and cell are reused when its method string is the same (a compare: the request's
        # string is new each time, hashing it is dearer).
        method = request.method
        seen = self._last_method
        if seen is not None and type(method) is str and <str> method == <str> (<tuple> seen)[1]:
            method = (<tuple> seen)[0]
            cell = (<tuple> seen)[2]
        else:
            raw = method
            if type(method) is str:
                method = _METHODS.get(method, _INVALID)
            else:
                method = _INVALID
            cell = None
            if self._inflight is not None:
                cell = self._inflight_cells.get(method)
                if cell is None:
                    cell = self._inflight_cells.setdefault(method, self._inflight(method))
            if method is not _INVALID:
                self._last_method = (method, raw, cell)
        cdef _State state = _State.__new__(_State)
        state.method = method
        state.started = dp_clock()
        state.db = _MISSING
        state.queued = -1.0
        state.view_excluded = -1
        if cell is not None:
            _gauge_add(cell, 1.0)
            state.inflight = cell
        return state

    cdef double _queued(self, meta) except? -2.0:
        # Seconds the request waited before Django (X-Request-Start or X-Queue-Start); -1: unknown.
        if type(meta) is dict:
            header = (<dict> meta).get("HTTP_X_REQUEST_START")
            if header is None:
                header = (<dict> meta).get("HTTP_X_QUEUE_START")
        else:
            header = meta.get("HTTP_X_REQUEST_START")
            if header is None:
                header = meta.get("HTTP_X_QUEUE_START")
        if header is None:
            return -1.0
        return _queue_seconds(header, dp_wall())

    def end(self, request, response, state, bint outer):
        """Record the route; ``SKIP`` for a view-excluded request (the core drops its deferred counts)."""
        return self._end(request, response, state)

    cdef object _end(self, request, response, state):
        cdef _State st
        cdef double elapsed
        if type(state) is not _State:
            try:
                return _SKIP if self._decided(request, None) else None
            except Exception:
                _log_failure("an exclusion rule")
                return None
        st = <_State>state
        try:
            if self._decided(request, st):
                _disown(request, st)
                st.release()
                self._db_finish(st, route(request), True)
                self._cache_finish(st)
                return _SKIP
            _disown(request, st)
            elapsed = dp_clock() - st.started
            if st.queued >= 0.0:
                _observe(self._queue, st.queued)
            if self._route_requests is not None or self._db_end is not None:
                name = route(request) if st.route is None else st.route
            else:
                name = None
            if self._route_requests is not None:
                self._route_record(name, st.method, response.status_code, elapsed)
            token = st.db
            self._db_finish(st, name, False)
            if st.inflight is not None:
                closers = getattr(response, "_resource_closers", None)
                if type(closers) is list:
                    (<list>closers).append(st)  # released by response.close(), after streaming
                else:
                    st.release()
            cache = self._cache_finish(st)
            if self._timing is not None:
                self._server_timing(request, response, elapsed, None if token is _MISSING else token, cache)
        except Exception:
            _log_failure("a response")
            try:
                _disown(request, st)
            except Exception:
                pass
            st.release()
            self._cache_finish(st)
        return None

    cdef int _route_record(self, name, str method, status, double elapsed) except -1:
        # The route families' cells of (route, method, status), as the last response's by
        # identity (a top-level pattern's route is the same string each time), else looked up.
        cdef _RouteMethod entry
        seen = self._last_route
        if seen is not None and (<tuple> seen)[0] is name and (<tuple> seen)[1] is method and (
            (<tuple> seen)[2] is status
        ):
            entry = <_RouteMethod> (<tuple> seen)[3]
            cell = (<tuple> seen)[4]
        else:
            methods = self._routes.get(name)
            if methods is None:
                methods = self._routes.setdefault(name, {})
            found = (<dict>methods).get(method)
            if found is None:
                entry = _RouteMethod.__new__(_RouteMethod)
                entry.duration = self._route_duration(name, method)
                entry.statuses = {}
                found = (<dict>methods).setdefault(method, entry)
            entry = <_RouteMethod>found
            cell = entry.statuses.get(status)
            if cell is None:
                cell = entry.statuses.setdefault(status, self._route_requests(name, method, self._status(status)))
            self._last_route = (name, method, status, entry, cell)
        _inc(cell)
        _observe(entry.duration, elapsed)
        return 0

    def abort(self, request, state, bint outer):
        """``get_response`` raised: release the in-flight slot and the DB accounting."""
        self._abort(request, state)

    cdef int _abort(self, request, state) except -1:
        if type(state) is not _State:
            return 0
        try:
            _disown(request, <_State>state)
        except Exception:
            _log_failure("a failed request")
        (<_State>state).release()
        try:
            if (<_State>state).queued >= 0.0:
                _observe(self._queue, (<_State>state).queued)
            self._db_finish(<_State>state, route(request), False)
            self._cache_finish(<_State>state)
        except Exception:
            _log_failure("a failed request")
        return 0

    # -- helpers ---------------------------------------------------------------------------------

    cdef str _status(self, status):
        label = self._statuses.get(status)
        if label is None:
            label = status_label(status, self._group)
            if len(self._statuses) < _STATUS_CACHE_MAX:
                self._statuses[status] = label
        return <str>label

    cdef object _cache_finish(self, _State state):
        # The request's cache accounting, ended (None when none was kept).
        cache = state.cache
        if cache is None:
            return None
        state.cache = None
        try:
            self._cache_end(cache)
        except Exception:
            _log_failure("a response (cache accounting)")
        return cache

    cdef int _server_timing(self, request, response, double elapsed, db, cache) except -1:
        # PROMETHEUS_SERVER_TIMING: the header, written by the core's ``_http.ServerTiming``.
        try:
            self._timing(request, response, elapsed, db, cache)
        except Exception:
            _log_failure("a response (Server-Timing)")
        return 0

    cdef void _db_finish(self, _State state, name, bint excluded) except *:
        token = state.db
        if token is _MISSING:
            return
        state.db = _MISSING
        if excluded and self._db_discard is not None:  # stop accounting, observe nothing
            self._db_discard(token)
            return
        self._db_end(token, name)


@cython.final
cdef class SpanIds:
    """The exemplar capture's guard: None at once while the current Context holds no span.

    ``var`` is the ContextVar that holds OpenTelemetry's current Context (a dict
    that is never changed once made), ``key`` the span's key in it, ``slow()`` the
    full capture (asked whenever a span may be current). The last Context seen
    without a span is remembered: outside a trace, a capture is one ContextVar read.
    """

    cdef object var, key, slow, spanless

    def __init__(self, var, key, slow):
        self.var = var
        self.key = key
        self.slow = slow
        self.spanless = None

    def __call__(self):
        return self._ids()

    @cython.binding(False)  # a plain method: its bound form is called by vectorcall, no arguments
    def capture(self):
        """The same as calling the guard; as a bound method, a histogram calls it by vectorcall."""
        return self._ids()

    cdef object _ids(self):
        context = get_value(self.var)
        if context is None:
            return self.slow()
        if context is self.spanless:
            return None
        if type(context) is not dict and not isinstance(context, dict):
            return self.slow()
        if (<dict> context).get(self.key) is None:
            self.spanless = context
            return None
        return self.slow()


# --- the C entry points of ``_http_c``'s middlewares ---------------------------------------------


cdef object _seam_begin(object features, object request, bint outer, int *flags):
    # flags: 1 defer the recorder's request-time counts; 2 call ``abort(SKIP)`` when done.
    cdef int skipped = 0
    state = (<Features> features)._begin(request, &skipped)
    flags[0] = (1 if (<Features> features)._defer else 0) | (2 if skipped else 0)
    return state


cdef object _seam_end(object features, object request, object response, object state, bint outer):
    return (<Features> features)._end(request, response, state)


cdef int _seam_abort(object features, object request, object state, bint outer) except -1:
    if state is _SKIP:  # the excluded path's entry (flag 2 of begin)
        return _forget(request)
    return (<Features> features)._abort(request, state)


cdef int _seam_excluded(object features, object request) except -1:
    return (<Features> features)._excluded(request)


cdef int _seam_view(object features, object request, object match, object name) except -1:
    return (<Features> features)._view_hook(request, match, name)


cdef dp_features_api _seam
_seam.view = _seam_view
_seam.begin = _seam_begin
_seam.end = _seam_end
_seam.abort = _seam_abort
_seam.excluded = _seam_excluded
cdef object _SEAM = PyCapsule_New(<void *> &_seam, "django_prometheus._core._features_c.SEAM", NULL)
