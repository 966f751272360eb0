# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""Compiled opt-in HTTP features: the per-request work of routes, exclusions, in-flight, queue time.

The pure-Python twin is ``_extras_py.py``; keep both in step (same names, same
behaviour; ``tests/test_http_core_extras.py`` runs both side by side). A leaf:
it imports nothing from Django or django_prometheus.
``django_prometheus.http.extras`` reads the settings, creates the families and
hands in their ``labels`` functions (or one cell); ``Extras`` is the object
``_http.set_extras`` installs. It resolves the cells of a label combination
once and afterwards only increments them; every entry point logs and swallows
its own failures (instrumentation never breaks a request).
"""

import logging
from time import time as _wall

cimport cython
from cpython.pycapsule cimport PyCapsule_GetPointer

from . import _cells_c
from ._http_c import SKIP

cdef extern from "dp_clock.h":
    double dp_clock() nogil

# The cells' C entry points (declared in _cells_c.pyx; keep the two structs identical).
ctypedef void (*dp_cell_add)(object, double) noexcept

cdef struct dp_cells_api:
    dp_cell_add counter_inc
    dp_cell_add histogram_observe

cdef dp_cells_api *_api = <dp_cells_api *> PyCapsule_GetPointer(
    _cells_c.C_API, "django_prometheus._core._cells_c.C_API")
cdef type _Counter = _cells_c.Counter
cdef type _Histogram = _cells_c.Histogram

__all__ = [
    "DO_NOT_TRACK",
    "INNER",
    "KEY",
    "QUEUE_MAX_SECONDS",
    "UNMATCHED",
    "Extras",
    "queue_seconds",
    "route",
    "status_label",
]

logger = logging.getLogger("django_prometheus.middleware")

#: The ``route`` label when no URL pattern matched (a 404 from the resolver).
UNMATCHED = "<unmatched>"
#: The longest queue time observed; beyond it the header is someone else's clock or a replay.
QUEUE_MAX_SECONDS = 3600.0
#: The request's attribute that carries the features' state from one middleware to the other.
KEY = "_prometheus_extras"
#: The view attribute ``do_not_track`` sets.
DO_NOT_TRACK = "_prometheus_do_not_track"

cdef str _UNMATCHED = UNMATCHED
cdef str _KEY = KEY
cdef str _DO_NOT_TRACK = DO_NOT_TRACK
cdef object _SKIP = SKIP
cdef dict _METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")}
cdef str _INVALID = "<invalid method>"
cdef dict _GROUPS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
cdef Py_ssize_t _STATUS_CACHE_MAX = 1024
cdef Py_ssize_t _FUNC_CACHE_MAX = 4096
cdef object _MISSING = object()


class _Inner:
    __slots__ = ()

    def __repr__(self):
        return "INNER"


#: ``begin``'s state in the inner middleware when the outer one owns the request.
INNER = _Inner()
cdef object _INNER = INNER


cdef inline void _inc(object cell) except *:
    if type(cell) is _Counter:
        _api.counter_inc(cell, 1.0)
    else:
        cell.inc(1.0)


cdef inline void _observe(object cell, double amount) except *:
    if type(cell) is _Histogram:
        _api.histogram_observe(cell, amount)
    else:
        cell.observe(amount)


cdef void _log_failure(str where):
    logger.exception("django_prometheus: could not record the HTTP metrics of %s (opt-in features)", where)


cpdef str route(request):
    """The ``route`` label: the URL pattern that matched (``resolver_match.route``), else ``<unmatched>``.

    Django joins the patterns of includes into ``route`` itself (namespaces do
    not appear in it); a regex pattern is its regex. Never the raw path.
    """
    match = getattr(request, "resolver_match", None)
    if match is None:
        return _UNMATCHED
    value = getattr(match, "route", None)
    return <str>value if type(value) is str and value else _UNMATCHED


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


cdef double _queue_seconds(value, double now) except? -2.0:
    # -1.0: not observed.
    cdef double stamp, waited
    if type(value) is not str or not value or len(<str>value) > 40:
        return -1.0
    if (<str>value).startswith("t="):
        value = (<str>value)[2:]
    try:
        stamp = float(value)
    except ValueError:
        return -1.0
    if not stamp > 0.0 or stamp == float("inf"):
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
cdef class _State:
    """One request the features own: when it began, its method, its in-flight cell, its DB token.

    Also the in-flight gauge's closer: ``response.close()`` calls it (once).
    """

    cdef readonly str method
    cdef readonly double started
    cdef double queued  # < 0: none; observed once the view is known not to be excluded
    cdef int view_excluded  # -1: not decided yet (the view exclusions, decided once a request)
    cdef object inflight
    cdef object db

    def __call__(self):
        self.release()

    cdef void release(self):
        cell = self.inflight
        self.inflight = None
        if cell is not None:
            try:
                cell.dec(1.0)
            except Exception:
                _log_failure("an in-flight request")


cdef class _RouteMethod:
    cdef object duration
    cdef dict statuses


cdef class Extras:
    """What both middlewares call around each request (``_http.set_extras``' protocol).

    ``config`` attributes (None/empty: that feature is off): ``route_requests``
    and ``route_duration`` (``labels`` of the two route families),
    ``group_status``, ``inflight`` (``labels`` of the gauge), ``queue`` (the
    histogram's cell), ``exclude_paths`` (a compiled regex, searched in
    ``path_info``), ``exclude_views`` (URL names, namespaced names, dotted view
    paths), ``defer`` (view exclusions may apply), ``db_begin``/``db_end``
    (per-request DB accounting) and ``db_discard`` (stop it without observing).
    """

    cdef object _route_requests, _route_duration, _inflight, _queue, _paths_search
    cdef object _db_begin, _db_end, _db_discard
    cdef bint _group, _defer
    cdef frozenset _exclude_views
    cdef dict _routes, _inflight_cells, _statuses, _funcs

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
        self._routes = {}
        self._inflight_cells = {}
        self._statuses = {}
        self._funcs = {}

    @property
    def defer(self):
        return self._defer

    # -- exclusions ------------------------------------------------------------------------------

    def path_excluded(self, request):
        """Whether ``PROMETHEUS_EXCLUDE_PATHS`` excludes the request (decided before the view resolves)."""
        if self._paths_search is None:
            return False
        state = getattr(request, _KEY, None)
        if state is not None:
            return state is True
        path = getattr(request, "path_info", None)
        return type(path) is str and self._paths_search(path) is not None

    def view_excluded(self, request):
        """Whether the resolved view is excluded (``do_not_track`` or ``PROMETHEUS_EXCLUDE_VIEWS``)."""
        return self._view_excluded(request)

    cdef bint _view_excluded(self, request) except -1:
        match = getattr(request, "resolver_match", None)
        if match is None:
            return False
        func = match.func
        try:
            marked = self._funcs.get(func)
        except TypeError:  # an unhashable view callable
            marked = _marked(func)
        else:
            if marked is None:
                marked = _marked(func)
                if len(self._funcs) < _FUNC_CACHE_MAX:
                    self._funcs[func] = marked
        if marked:
            return True
        views = self._exclude_views
        if views:
            return (
                match.view_name in views
                or match.url_name in views
                or getattr(match, "_func_path", None) in views
            )
        return False

    cdef bint _decided(self, request, state) except -1:
        # The view exclusions, decided once per request (hooks, inner and outer end ask in turn).
        cdef _State st
        if not self._defer:
            return False
        if type(state) is not _State:
            state = getattr(request, _KEY, None)
            if type(state) is not _State:
                return state is True or self._view_excluded(request)
        st = <_State>state
        if st.view_excluded < 0:
            if getattr(request, "resolver_match", None) is None:
                return False  # not resolved (yet): decide later
            st.view_excluded = self._view_excluded(request)
        return st.view_excluded

    def excluded(self, request):
        """The After middleware's hooks: whether this request is recorded in no HTTP family."""
        try:
            state = getattr(request, _KEY, None)
            if state is True:
                return True
            return self._decided(request, state)
        except Exception:
            _log_failure("an exclusion rule")
            return False

    # -- the protocol ----------------------------------------------------------------------------

    def begin(self, request, bint outer):
        """A state for ``end``; ``SKIP`` for an excluded path."""
        cdef _State state
        cdef double waited
        try:
            # getattr/setattr, not request.__dict__: that would turn the request's inline
            # attribute values into a dict, slowing every later attribute access of Django's.
            found = getattr(request, _KEY, None)
            if found is not None:  # the outer middleware began the request: it owns it
                return _SKIP if found is True else _INNER
            if self._paths_search is not None:
                path = request.path_info
                if type(path) is str and self._paths_search(path) is not None:
                    setattr(request, _KEY, True)
                    return _SKIP
            method = request.method
            if type(method) is str:
                method = _METHODS.get(method, _INVALID)
            else:
                method = _INVALID
            state = _State.__new__(_State)
            state.method = method
            state.started = dp_clock()
            state.db = _MISSING
            state.queued = -1.0
            state.view_excluded = -1
            setattr(request, _KEY, state)
            if self._inflight is not None:
                cell = self._inflight_cells.get(method)
                if cell is None:
                    cell = self._inflight_cells.setdefault(method, self._inflight(method))
                cell.inc(1.0)
                state.inflight = cell
            if self._queue is not None:
                meta = request.META
                header = meta.get("HTTP_X_REQUEST_START")
                if header is None:
                    header = meta.get("HTTP_X_QUEUE_START")
                if header is not None:
                    state.queued = _queue_seconds(header, _wall())
            if self._db_begin is not None:
                state.db = self._db_begin()
            return state
        except Exception:
            _log_failure("a request")
            return _INNER  # record the upstream families as if no feature were on

    def end(self, request, response, state, bint outer):
        """Record the route; ``SKIP`` for a view-excluded request (the core drops its deferred counts)."""
        cdef _State st
        cdef _RouteMethod entry
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
                st.release()
                self._db_finish(st, route(request), True)
                return _SKIP
            elapsed = dp_clock() - st.started
            if st.queued >= 0.0:
                _observe(self._queue, st.queued)
            name = route(request) if (self._route_requests is not None or self._db_end is not None) else None
            if self._route_requests is not None:
                methods = self._routes.get(name)
                if methods is None:
                    methods = self._routes.setdefault(name, {})
                found = (<dict>methods).get(st.method)
                if found is None:
                    entry = _RouteMethod.__new__(_RouteMethod)
                    entry.duration = self._route_duration(name, st.method)
                    entry.statuses = {}
                    found = (<dict>methods).setdefault(st.method, entry)
                entry = <_RouteMethod>found
                status = response.status_code
                cell = entry.statuses.get(status)
                if cell is None:
                    cell = entry.statuses.setdefault(status, self._route_requests(name, st.method, self._status(status)))
                _inc(cell)
                _observe(entry.duration, elapsed)
            self._db_finish(st, name, False)
            if st.inflight is not None:
                closers = getattr(response, "_resource_closers", None)
                if type(closers) is list:
                    (<list>closers).append(st)  # released by response.close(), after streaming
                else:
                    st.release()
        except Exception:
            _log_failure("a response")
            st.release()
        return None

    def abort(self, request, state, bint outer):
        """``get_response`` raised: release the in-flight slot and the DB accounting."""
        if type(state) is not _State:
            return
        (<_State>state).release()
        try:
            if (<_State>state).queued >= 0.0:
                _observe(self._queue, (<_State>state).queued)
            self._db_finish(<_State>state, route(request), False)
        except Exception:
            _log_failure("a failed request")

    # -- helpers ---------------------------------------------------------------------------------

    cdef str _status(self, status):
        label = self._statuses.get(status)
        if label is None:
            label = status_label(status, self._group)
            if len(self._statuses) < _STATUS_CACHE_MAX:
                self._statuses[status] = label
        return <str>label

    cdef void _db_finish(self, _State state, name, bint excluded) except *:
        token = state.db
        if token is _MISSING:
            return
        state.db = _MISSING
        if excluded and self._db_discard is not None:  # stop accounting, observe nothing
            self._db_discard(token)
            return
        self._db_end(token, name)
