"""Pure-Python twin of ``_features_c.pyx``: the opt-in HTTP features' per-request work.

Keep the two files in step (``tests/test_core_features.py`` runs both side by
side). A leaf: it imports nothing from Django or django_prometheus.
``django_prometheus.http.features`` reads the settings, creates the families and
hands in their ``labels`` functions (or one cell); ``Features`` is the object
``_http.set_features`` installs. It resolves the cells of a label combination
once and afterwards only increments them; every entry point logs and swallows
its own failures (instrumentation never breaks a request).
"""

from __future__ import annotations

from functools import partial
from time import perf_counter, time
from typing import Any

from ._http_py import _FAILURE, SKIP
from ._http_py import _log_failure as _log_http_failure

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

_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")}
_INVALID = "<invalid method>"
_GROUPS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_STATUS_CACHE_MAX = 1024
_FUNC_CACHE_MAX = 4096
_NAMES_CACHE_MAX = 64  # view names per view function (a view routed under many names)
_PATH_KEY_MAX = 512  # longer paths are searched, not kept
_OWNED_MAX = 1 << 16
_MISSING: Any = object()


class _Inner:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INNER"


#: ``begin``'s state in the inner middleware when the outer one owns the request.
INNER: Any = _Inner()


# The requests an outer middleware owns, while it does: request -> _State (the compiled
# twin's rules, read there): found by identity instead of on a request attribute.
_owned: dict[Any, Any] = {}
_on_attributes = [False]  # set once a state went on a request attribute instead


def owned() -> int:
    """How many requests the features' table holds now (tests: it empties as requests end)."""
    return len(_owned)


def _keyable(request: Any) -> bool:
    return type(request).__hash__ is object.__hash__


def _find(request: Any) -> Any:
    # The state the outer middleware left: a _State, True (an excluded path) or None.
    if _keyable(request):
        found = _owned.get(request)
        if found is not None:
            return found
    if _on_attributes[0]:
        return getattr(request, KEY, None)
    return None


def _own(request: Any, state: Any) -> None:
    if type(state) is _State and _keyable(request) and len(_owned) < _OWNED_MAX:
        _owned[request] = state
        state.keyed = True
    else:
        _on_attributes[0] = True
        # getattr/setattr, not request.__dict__: that would turn the request's inline
        # attribute values into a dict, slowing every later attribute access of Django's.
        setattr(request, KEY, state)


def _disown(request: Any, state: Any) -> None:
    if state.keyed:
        state.keyed = False
        if _owned.get(request) is state:
            _owned.pop(request, None)


# The pure HTTP core's failure log, the opt-in features named in its message.
_log_failure = partial(_log_http_failure, failure=f"{_FAILURE} (opt-in features)")


def route(request: Any) -> str:
    """The ``route`` label: the URL pattern that matched (``resolver_match.route``), else ``<unmatched>``.

    Django joins the patterns of includes into ``route`` itself (namespaces do
    not appear in it); a regex pattern is its regex; the empty pattern (the
    root) is ``/``. Never the raw path.
    """
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    value = getattr(match, "route", None)
    if type(value) is not str:
        return UNMATCHED
    return value or ROOT


def status_label(status: object, group: bool) -> str:
    """The ``status`` label of the route counter: the code, or its class (``2xx``) when ``group``."""
    if group and type(status) is int:
        found = _GROUPS.get(status // 100)
        if found is not None:
            return found
    return str(status)


def queue_seconds(value: object, now: float) -> float | None:
    """Seconds a request waited before Django saw it, from ``X-Request-Start``/``X-Queue-Start``.

    ``t=`` prefix optional; seconds, milliseconds or microseconds since the
    epoch, told apart by magnitude (nginx ``t=${msec}``, Heroku milliseconds,
    HAProxy microseconds). None when absent, unparsable, negative or over one hour.
    """
    if type(value) is not str or not value or len(value) > 40:
        return None
    if value.startswith("t="):
        value = value[2:]
    try:
        stamp = float(value)
    except ValueError:
        return None
    if not stamp > 0.0 or stamp == float("inf"):
        return None
    if stamp > 1e14:
        stamp /= 1e6
    elif stamp > 1e11:
        stamp /= 1e3
    waited = now - stamp
    if 0.0 <= waited <= QUEUE_MAX_SECONDS:
        return waited
    return None


def _marked(func: Any) -> bool:
    # ``do_not_track`` on the view function, or on the class behind ``as_view()`` (Django, DRF).
    if getattr(func, DO_NOT_TRACK, False):
        return True
    for owner in (getattr(func, "view_class", None), getattr(func, "cls", None)):
        if owner is not None and getattr(owner, DO_NOT_TRACK, False):
            return True
    return False


class _State:
    """One request the features own: when it began, its method, its in-flight cell, its DB token.

    Also the in-flight gauge's closer: ``response.close()`` calls it (once).
    """

    __slots__ = ("cache", "db", "inflight", "keyed", "method", "queued", "started", "view_excluded")

    def __init__(self, method: str, started: float) -> None:
        self.method = method
        self.started = started
        self.inflight: Any = None
        self.db: Any = _MISSING
        self.cache: Any = None  # the request's cache accounting (Server-Timing), if kept
        self.queued: float | None = None  # observed once the view is known not to be excluded
        self.view_excluded: bool | None = None  # the view exclusions, decided once a request
        self.keyed = False  # in the owners' table

    def __call__(self) -> None:
        cell, self.inflight = self.inflight, None
        if cell is not None:
            try:
                cell.dec(1.0)
            except Exception:
                _log_failure("an in-flight request")


class _RouteMethod:
    __slots__ = ("duration", "statuses")

    def __init__(self, duration: Any) -> None:
        self.duration = duration
        self.statuses: dict[object, Any] = {}


class _ViewRule:
    # The view exclusions of one view function: ``do_not_track``, then by view name (bounded).
    __slots__ = ("marked", "names")

    def __init__(self, marked: bool) -> None:
        self.marked = marked
        self.names: dict[str, bool] = {}


class Features:
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
    """

    __slots__ = (
        "_cache_begin",
        "_cache_end",
        "_db_begin",
        "_db_discard",
        "_db_end",
        "_exclude_paths",
        "_exclude_views",
        "_funcs",
        "_group",
        "_inflight",
        "_inflight_cells",
        "_paths",
        "_queue",
        "_route_duration",
        "_route_requests",
        "_routes",
        "_statuses",
        "_timing",
        "defer",
    )

    def __init__(self, config: Any) -> None:
        self._route_requests = config.route_requests
        self._route_duration = config.route_duration
        self._group = bool(config.group_status)
        self._inflight = config.inflight
        self._queue = config.queue
        self._exclude_paths = config.exclude_paths
        self._exclude_views = frozenset(config.exclude_views or ())
        self.defer = bool(config.defer)
        self._db_begin = config.db_begin
        self._db_end = config.db_end
        self._db_discard = getattr(config, "db_discard", None)
        self._timing = getattr(config, "server_timing", None)
        self._cache_begin = getattr(config, "cache_begin", None)
        self._cache_end = getattr(config, "cache_end", None)
        self._routes: dict[str, dict[str, _RouteMethod]] = {}
        self._inflight_cells: dict[str, Any] = {}
        self._statuses: dict[object, str] = {}
        self._funcs: dict[Any, _ViewRule] = {}
        self._paths: dict[str, bool] = {}

    def cache_sizes(self) -> dict[str, int]:
        """How many entries each of the bounded caches holds (tests: hostile input grows none)."""
        return {"paths": len(self._paths), "views": len(self._funcs), "statuses": len(self._statuses)}

    # -- exclusions ------------------------------------------------------------------------------

    def path_excluded(self, request: Any) -> bool:
        """Whether ``PROMETHEUS_EXCLUDE_PATHS`` excludes the request (decided before the view resolves)."""
        if self._exclude_paths is None:
            return False
        state = _find(request)
        if state is not None:
            return state is True
        return self._path_excluded(getattr(request, "path_info", None))

    def _path_excluded(self, path: Any) -> bool:
        # The regex's answer for ``path``, kept for recent paths (bounded: see PATH_CACHE_MAX).
        if type(path) is not str:
            return False
        found = self._paths.get(path)
        if found is not None:
            return found
        excluded = self._exclude_paths.search(path) is not None
        if len(path) <= _PATH_KEY_MAX:
            if len(self._paths) >= PATH_CACHE_MAX:
                self._paths.clear()
            self._paths[path] = excluded
        return excluded

    def view_excluded(self, request: Any) -> bool:
        """Whether the resolved view is excluded (``do_not_track`` or ``PROMETHEUS_EXCLUDE_VIEWS``)."""
        return self._view_excluded(getattr(request, "resolver_match", None))

    def _view_excluded(self, match: Any) -> bool:
        # Decided once per (view function, view name), as the compiled twin does.
        if match is None:
            return False
        func = match.func
        try:
            rule = self._funcs.get(func)
        except TypeError:  # an unhashable view callable
            return _marked(func) or self._named(match)
        if rule is None:
            rule = _ViewRule(_marked(func))
            if len(self._funcs) >= _FUNC_CACHE_MAX:
                self._funcs.clear()
            self._funcs[func] = rule
        if rule.marked:
            return True
        if not self._exclude_views:
            return False
        name = match.view_name
        if type(name) is not str:
            return self._named(match)
        found = rule.names.get(name)
        if found is not None:
            return found
        excluded = self._named(match)
        if len(rule.names) >= _NAMES_CACHE_MAX:
            rule.names.clear()
        rule.names[name] = excluded
        return excluded

    def _named(self, match: Any) -> bool:
        views = self._exclude_views
        return bool(views) and (
            match.view_name in views or match.url_name in views or getattr(match, "_func_path", None) in views
        )

    def _decided(self, request: Any, state: Any) -> bool:
        # The view exclusions, decided once per request (hooks, inner and outer end ask in turn).
        if not self.defer:
            return False
        if type(state) is not _State:
            state = _find(request)
            if type(state) is not _State:
                return state is True or self._view_excluded(getattr(request, "resolver_match", None))
        if state.view_excluded is None:
            match = getattr(request, "resolver_match", None)
            if match is None:
                return False  # not resolved (yet): decide later
            state.view_excluded = self._view_excluded(match)
        return state.view_excluded

    def _state_or_excluded(self, request: Any) -> Any:
        # The request's state in the owners' table; True when its path is excluded: the outer
        # middleware skipped it, or (not owned: no outer middleware) its path matches.
        state = _find(request)
        if state is None and self._exclude_paths is not None:
            if self._path_excluded(getattr(request, "path_info", None)):
                return True
        return state

    def excluded(self, request: Any) -> bool:
        """The After middleware's hooks: whether this request is recorded in no HTTP family."""
        try:
            state = self._state_or_excluded(request)
            if state is True:
                return True
            return self._decided(request, state)
        except Exception:
            _log_failure("an exclusion rule")
            return False

    # -- the protocol ----------------------------------------------------------------------------

    def begin(self, request: Any, outer: bool) -> Any:
        """A state for ``end``; ``SKIP`` (the core's, passed as ``skip``) for an excluded path."""
        state = None
        try:
            found = _find(request)
            if found is not None:  # the outer middleware began the request: it owns it
                return SKIP if found is True else INNER
            if self._exclude_paths is not None and self._path_excluded(request.path_info):
                _own(request, True)
                return SKIP
            method = request.method
            method = _METHODS.get(method, _INVALID) if type(method) is str else _INVALID
            state = _State(method, perf_counter())
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
                    state.queued = queue_seconds(header, time())
            if self._db_begin is not None:
                state.db = self._db_begin()
            if self._cache_begin is not None:
                state.cache = self._cache_begin()
            _own(request, state)
            return state
        except Exception:
            _log_failure("a request")
            if state is not None:
                state()
            return INNER  # record the upstream families as if no feature were on

    def end(self, request: Any, response: Any, state: Any, outer: bool) -> Any:
        """Record the route; ``SKIP`` for a view-excluded request (the core drops its deferred counts)."""
        try:
            if state is INNER or type(state) is not _State:
                return SKIP if self._decided(request, None) else None
            if self._decided(request, state):
                _disown(request, state)
                state()
                self._db_finish(state, route(request), True)
                self._cache_finish(state)
                return SKIP
            _disown(request, state)
            elapsed = perf_counter() - state.started
            if state.queued is not None:
                self._queue.observe(state.queued)
            name = route(request) if (self._route_requests is not None or self._db_end is not None) else None
            if self._route_requests is not None:
                methods = self._routes.get(name)  # type: ignore[arg-type]
                if methods is None:
                    methods = self._routes.setdefault(name, {})  # type: ignore[arg-type]
                entry = methods.get(state.method)
                if entry is None:
                    entry = methods.setdefault(
                        state.method, _RouteMethod(self._route_duration(name, state.method))
                    )
                status = response.status_code
                cell = entry.statuses.get(status)
                if cell is None:
                    cell = entry.statuses.setdefault(
                        status, self._route_requests(name, state.method, self._status(status))
                    )
                cell.inc(1.0)
                entry.duration.observe(elapsed)
            token = state.db
            self._db_finish(state, name)
            if state.inflight is not None:
                closers = getattr(response, "_resource_closers", None)
                if type(closers) is list:
                    closers.append(state)  # released by response.close(), after streaming
                else:
                    state()
            cache = self._cache_finish(state)
            if self._timing is not None:
                self._server_timing(request, response, elapsed, None if token is _MISSING else token, cache)
        except Exception:
            _log_failure("a response")
            if type(state) is _State:
                try:
                    _disown(request, state)
                except Exception:
                    pass
                state()
                self._cache_finish(state)
        return None

    def abort(self, request: Any, state: Any, outer: bool) -> None:
        """``get_response`` raised: release the in-flight slot and the DB accounting."""
        if type(state) is not _State:
            return
        try:
            _disown(request, state)
        except Exception:
            _log_failure("a failed request")
        state()
        try:
            if state.queued is not None:
                self._queue.observe(state.queued)
            self._db_finish(state, route(request))
            self._cache_finish(state)
        except Exception:
            _log_failure("a failed request")

    # -- helpers ---------------------------------------------------------------------------------

    def _status(self, status: object) -> str:
        label = self._statuses.get(status)
        if label is None:
            label = status_label(status, self._group)
            if len(self._statuses) < _STATUS_CACHE_MAX:
                self._statuses[status] = label
        return label

    def _cache_finish(self, state: _State) -> Any:
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

    def _server_timing(self, request: Any, response: Any, elapsed: float, db: Any, cache: Any) -> None:
        # PROMETHEUS_SERVER_TIMING: the header, written by the core's ``_http.ServerTiming``.
        try:
            self._timing(request, response, elapsed, db, cache)
        except Exception:
            _log_failure("a response (Server-Timing)")

    def _db_finish(self, state: _State, name: str | None, excluded: bool = False) -> None:
        token = state.db
        if token is _MISSING:
            return
        state.db = _MISSING
        if excluded and self._db_discard is not None:  # stop accounting, observe nothing
            self._db_discard(token)
            return
        self._db_end(token, name)


class SpanIds:
    """The exemplar capture's guard: None at once while the current Context holds no span.

    ``var`` is the ContextVar that holds OpenTelemetry's current Context (a dict
    that is never changed once made), ``key`` the span's key in it, ``slow()`` the
    full capture (asked whenever a span may be current). The last Context seen
    without a span is remembered: outside a trace, a capture is one ContextVar read.
    """

    __slots__ = ("key", "slow", "spanless", "var")

    def __init__(self, var: Any, key: str, slow: Any) -> None:
        self.var = var
        self.key = key
        self.slow = slow
        self.spanless: Any = None

    def __call__(self) -> Any:
        context = self.var.get(None)
        if context is None:
            return self.slow()
        if context is self.spanless:
            return None
        if not isinstance(context, dict):
            return self.slow()
        if context.get(self.key) is None:
            self.spanless = context
            return None
        return self.slow()

    def capture(self) -> Any:
        """The same as calling the guard (the compiled twin's cheaper call as a bound method)."""
        return self()
