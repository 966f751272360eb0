"""Pure-Python twin of ``_extras_c.pyx``: the opt-in HTTP features' per-request work.

Keep the two files in step (``tests/test_http_core_extras.py`` runs both side by
side). A leaf: it imports nothing from Django or django_prometheus.
``django_prometheus.http.extras`` reads the settings, creates the families and
hands in their ``labels`` functions (or one cell); ``Extras`` is the object
``_http.set_extras`` installs. It resolves the cells of a label combination
once and afterwards only increments them; every entry point logs and swallows
its own failures (instrumentation never breaks a request).
"""

from __future__ import annotations

import logging
from time import perf_counter, time
from typing import Any

from ._http_py import SKIP

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

_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH")}
_INVALID = "<invalid method>"
_GROUPS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_STATUS_CACHE_MAX = 1024
_FUNC_CACHE_MAX = 4096
_MISSING: Any = object()


class _Inner:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INNER"


#: ``begin``'s state in the inner middleware when the outer one owns the request.
INNER: Any = _Inner()


def _log_failure(where: str) -> None:
    logger.exception("django_prometheus: could not record the HTTP metrics of %s (opt-in features)", where)


def route(request: Any) -> str:
    """The ``route`` label: the URL pattern that matched (``resolver_match.route``), else ``<unmatched>``.

    Django joins the patterns of includes into ``route`` itself (namespaces do
    not appear in it); a regex pattern is its regex. Never the raw path.
    """
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    value = getattr(match, "route", None)
    return value if type(value) is str and value else UNMATCHED


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

    __slots__ = ("db", "inflight", "method", "queued", "started", "view_excluded")

    def __init__(self, method: str, started: float) -> None:
        self.method = method
        self.started = started
        self.inflight: Any = None
        self.db: Any = _MISSING
        self.queued: float | None = None  # observed once the view is known not to be excluded
        self.view_excluded: bool | None = None  # the view exclusions, decided once a request

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


class Extras:
    """What both middlewares call around each request (``_http.set_extras``' protocol).

    ``config`` attributes (None/empty: that feature is off): ``route_requests``
    and ``route_duration`` (``labels`` of the two route families),
    ``group_status``, ``inflight`` (``labels`` of the gauge), ``queue`` (the
    histogram's cell), ``exclude_paths`` (a compiled regex, searched in
    ``path_info``), ``exclude_views`` (URL names, namespaced names, dotted view
    paths), ``defer`` (view exclusions may apply), ``db_begin``/``db_end``
    (per-request DB accounting) and ``db_discard`` (stop it without observing).
    """

    __slots__ = (
        "_db_begin",
        "_db_discard",
        "_db_end",
        "_exclude_paths",
        "_exclude_views",
        "_funcs",
        "_group",
        "_inflight",
        "_inflight_cells",
        "_queue",
        "_route_duration",
        "_route_requests",
        "_routes",
        "_statuses",
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
        self._routes: dict[str, dict[str, _RouteMethod]] = {}
        self._inflight_cells: dict[str, Any] = {}
        self._statuses: dict[object, str] = {}
        self._funcs: dict[Any, bool] = {}

    # -- exclusions ------------------------------------------------------------------------------

    def path_excluded(self, request: Any) -> bool:
        """Whether ``PROMETHEUS_EXCLUDE_PATHS`` excludes the request (decided before the view resolves)."""
        paths = self._exclude_paths
        if paths is None:
            return False
        state = getattr(request, KEY, None)
        if state is not None:
            return state is True
        path = getattr(request, "path_info", None)
        return type(path) is str and paths.search(path) is not None

    def view_excluded(self, request: Any) -> bool:
        """Whether the resolved view is excluded (``do_not_track`` or ``PROMETHEUS_EXCLUDE_VIEWS``)."""
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

    def _decided(self, request: Any, state: Any) -> bool:
        # The view exclusions, decided once per request (hooks, inner and outer end ask in turn).
        if not self.defer:
            return False
        if type(state) is not _State:
            state = getattr(request, KEY, None)
            if type(state) is not _State:
                return state is True or self.view_excluded(request)
        if state.view_excluded is None:
            if getattr(request, "resolver_match", None) is None:
                return False  # not resolved (yet): decide later
            state.view_excluded = self.view_excluded(request)
        return state.view_excluded

    def excluded(self, request: Any) -> bool:
        """The After middleware's hooks: whether this request is recorded in no HTTP family."""
        try:
            state = getattr(request, KEY, None)
            if state is True:
                return True
            return self._decided(request, state)
        except Exception:
            _log_failure("an exclusion rule")
            return False

    # -- the protocol ----------------------------------------------------------------------------

    def begin(self, request: Any, outer: bool) -> Any:
        """A state for ``end``; ``SKIP`` (the core's, passed as ``skip``) for an excluded path."""
        try:
            # getattr/setattr, not request.__dict__: that would turn the request's inline
            # attribute values into a dict, slowing every later attribute access of Django's.
            state = getattr(request, KEY, None)
            if state is not None:  # the outer middleware began the request: it owns it
                return SKIP if state is True else INNER
            paths = self._exclude_paths
            if paths is not None:
                path = request.path_info
                if type(path) is str and paths.search(path) is not None:
                    setattr(request, KEY, True)
                    return SKIP
            method = request.method
            method = _METHODS.get(method, _INVALID) if type(method) is str else _INVALID
            state = _State(method, perf_counter())
            setattr(request, KEY, state)
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
            return state
        except Exception:
            _log_failure("a request")
            return INNER  # record the upstream families as if no feature were on

    def end(self, request: Any, response: Any, state: Any, outer: bool) -> Any:
        """Record the route; ``SKIP`` for a view-excluded request (the core drops its deferred counts)."""
        try:
            if state is INNER or type(state) is not _State:
                return SKIP if self._decided(request, None) else None
            if self._decided(request, state):
                state()
                self._db_finish(state, route(request), True)
                return SKIP
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
            self._db_finish(state, name)
            if state.inflight is not None:
                closers = getattr(response, "_resource_closers", None)
                if type(closers) is list:
                    closers.append(state)  # released by response.close(), after streaming
                else:
                    state()
        except Exception:
            _log_failure("a response")
            if type(state) is _State:
                state()
        return None

    def abort(self, request: Any, state: Any, outer: bool) -> None:
        """``get_response`` raised: release the in-flight slot and the DB accounting."""
        if type(state) is not _State:
            return
        state()
        try:
            if state.queued is not None:
                self._queue.observe(state.queued)
            self._db_finish(state, route(request))
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

    def _db_finish(self, state: _State, name: str | None, excluded: bool = False) -> None:
        token = state.db
        if token is _MISSING:
            return
        state.db = _MISSING
        if excluded and self._db_discard is not None:  # stop accounting, observe nothing
            self._db_discard(token)
            return
        self._db_end(token, name)
