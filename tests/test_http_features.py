"""The opt-in HTTP features through Django's test client: routes, exclusions, in-flight, queue time."""

from __future__ import annotations

import importlib.util
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client
from django_prometheus._core import _http
from prometheus_client import REGISTRY

from django_prometheus.checks import check_settings
from django_prometheus.http import features
from tests.http_project.checks import MIDDLEWARE, Delta, label_values

pytestmark = [
    pytest.mark.urls("tests.features_project.urls"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:asgiref"),
]

ROUTE = "django_http_route_requests_total"
# django-ninja is in the test set everywhere but free-threaded CPython (no pydantic-core build there).
NINJA = pytest.mark.skipif(importlib.util.find_spec("ninja") is None, reason="django-ninja is not installed")
DURATION = "django_http_route_request_duration_seconds"
INFLIGHT = "django_http_requests_in_progress"
QUEUE = "django_http_request_queue_seconds"


@pytest.fixture(autouse=True)
def _project(settings):
    import tests.features_project.views  # noqa: F401  (its do_not_track marks views)

    settings.MIDDLEWARE = MIDDLEWARE
    features._views_marked = True
    features.install()
    yield
    features._views_marked = False


@pytest.fixture(autouse=True)
def _uninstall():
    yield
    features._views_marked = False
    features.install()  # settings restored: nothing installed


@pytest.fixture
def routes(settings):
    settings.PROMETHEUS_ROUTE_METRICS = True
    return settings


def client() -> Client:
    return Client(raise_request_exception=False)


def test_the_former_module_path_is_the_features_module():
    # ``django_prometheus.http.extras`` was the module's name (the metrics reference named
    # ``extras.families()``): importing it, either way, gives the one module and its state.
    import django_prometheus.http.extras as former
    from django_prometheus.http import extras

    assert former is features and extras is features
    assert importlib.import_module("django_prometheus.http.extras") is features
    assert former.families is features.families and former.install is features.install


# --- off -----------------------------------------------------------------------------------------


def test_with_every_feature_off_nothing_is_installed(settings):
    features._views_marked = False
    features.install()
    assert _http.get_features() is None
    d = Delta()
    assert client().get("/ok").status_code == 200
    assert d(ROUTE, route="ok", method="GET", status="200") == 0
    assert d("django_http_requests_before_middlewares_total") == 1


def test_turning_a_feature_on_installs_the_core_features(routes):
    from django_prometheus._core import _features

    assert type(_http.get_features()) is _features.Features
    routes.PROMETHEUS_ROUTE_METRICS = False
    features._views_marked = False
    features.install()
    assert _http.get_features() is None


# --- route metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "route", "status"),
    [
        ("get", "/ok", "ok", "200"),
        ("get", "/shop/items/3/", "shop/items/<int:pk>/", "200"),
        ("get", "/shop/legacy/4/", "shop/legacy/(?P<pk>[0-9]+)/$", "200"),
        ("get", "/drf/items/", "drf/items/$", "200"),
        ("get", "/drf/items/5/", "drf/items/(?P<pk>[^/.]+)/$", "200"),
        pytest.param(*("get", "/ninja/things", "ninja/things", "200"), marks=NINJA),
        pytest.param(*("post", "/ninja/things", "ninja/things", "200"), marks=NINJA),
        pytest.param(*("get", "/ninja/things/7", "ninja/things/<thing_id>", "200"), marks=NINJA),
        ("get", "/status/503", "status/<int:code>", "503"),
        ("get", "/boom", "boom", "500"),
        ("get", "/nowhere/at/all", "<unmatched>", "404"),
    ],
)
def test_route_metrics_label_the_matched_pattern(routes, method, path, route, status):
    d = Delta()
    response = getattr(client(), method)(path)
    assert str(response.status_code) == status
    upper = method.upper()
    assert d(ROUTE, route=route, method=upper, status=status) == 1
    assert d(DURATION + "_count", route=route, method=upper) == 1
    assert d(DURATION + "_sum", route=route, method=upper) > 0
    # recorded once per request (by the outer middleware), never the raw path
    assert sum(d(ROUTE, route=r, method=upper, status=status) for r in label_values(ROUTE, "route")) == 1
    assert path not in label_values(ROUTE, "route") or path == route


@NINJA
def test_ninja_operations_are_routes_of_their_own(routes):
    d = Delta()
    c = client()
    c.get("/ninja/things")
    c.get("/ninja/things/1")
    c.get("/ninja/things/2")
    assert d(ROUTE, route="ninja/things", method="GET", status="200") == 1
    assert d(ROUTE, route="ninja/things/<thing_id>", method="GET", status="200") == 2


def test_group_status_codes(routes):
    routes.PROMETHEUS_GROUP_STATUS_CODES = True
    d = Delta()
    c = client()
    for code in (200, 201, 302, 404, 418, 503):
        assert c.get(f"/status/{code}").status_code == code
    for label, count in (("2xx", 2), ("3xx", 1), ("4xx", 2), ("5xx", 1)):
        assert d(ROUTE, route="status/<int:code>", method="GET", status=label) == count
    assert d(ROUTE, route="status/<int:code>", method="GET", status="200") == 0


def test_the_after_middleware_alone_records_routes(routes):
    routes.MIDDLEWARE = ["django_prometheus.middleware.PrometheusAfterMiddleware"]
    d = Delta()
    assert client().get("/ok").status_code == 200
    assert d(ROUTE, route="ok", method="GET", status="200") == 1
    assert d(DURATION + "_count", route="ok", method="GET") == 1


def test_the_before_middleware_alone_records_routes(routes):
    routes.MIDDLEWARE = ["django_prometheus.middleware.PrometheusBeforeMiddleware"]
    d = Delta()
    assert client().get("/shop/items/1/").status_code == 200
    assert d(ROUTE, route="shop/items/<int:pk>/", method="GET", status="200") == 1


def test_async_requests_record_routes(routes):
    d = Delta()

    async def run():
        c = AsyncClient(raise_request_exception=False)
        assert (await c.get("/aok")).status_code == 200
        assert (await c.get("/shop/items/9/")).status_code == 200

    import asyncio

    asyncio.run(run())
    assert d(ROUTE, route="aok", method="GET", status="200") == 1
    assert d(ROUTE, route="shop/items/<int:pk>/", method="GET", status="200") == 1


def test_hostile_paths_and_methods_add_no_series_beyond_unmatched_and_invalid_method(routes):
    routes.PROMETHEUS_INFLIGHT_METRICS = True
    c = client()
    c.get("/ok")
    before_routes = label_values(ROUTE, "route")
    for i in range(10_000):
        c.generic(f"M{i}", f"/x/{i}/{'y' * (i % 50)}")
    after = label_values(ROUTE, "route")
    assert after - before_routes <= {"<unmatched>"}
    assert label_values(ROUTE, "method") <= {"GET", "POST", "<invalid method>"}
    assert label_values(DURATION + "_count", "method") <= {"GET", "POST", "<invalid method>"}
    assert label_values(INFLIGHT, "method") <= {"GET", "POST", "<invalid method>"}
    unmatched = {"route": "<unmatched>", "method": "<invalid method>", "status": "404"}
    assert REGISTRY.get_sample_value(ROUTE, unmatched) >= 10_000


def test_namespace_applies_to_the_new_families(routes):
    routes.PROMETHEUS_METRIC_NAMESPACE = "shop"
    d = Delta()
    client().get("/ok")
    assert d("shop_django_http_route_requests_total", route="ok", method="GET", status="200") == 1
    assert d(ROUTE, route="ok", method="GET", status="200") == 0


def test_route_buckets_follow_latency_buckets(routes):
    routes.PROMETHEUS_LATENCY_BUCKETS = (0.5, 1.0, float("inf"))
    client().get("/ok")
    les = label_values(DURATION + "_bucket", "le")
    assert les == {"0.5", "1.0", "+Inf"}


# --- exclusions ----------------------------------------------------------------------------------


def _http_samples() -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in REGISTRY.collect()
        if f.name.startswith("django_http")
        for s in f.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("path", "how"),
    [
        ("/metrics", "path"),
        ("/untracked", "decorator"),
        ("/untracked-class", "decorated class"),
        ("/by-name", "url name"),
        ("/shop/items/2/", "namespaced name"),
        ("/ok", "dotted view"),
    ],
)
def test_an_excluded_request_appears_in_no_http_family(routes, mode, path, how):
    routes.PROMETHEUS_INFLIGHT_METRICS = True
    routes.PROMETHEUS_QUEUE_TIME_METRICS = True
    routes.PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$", r"^/nothing-else"]
    routes.PROMETHEUS_EXCLUDE_VIEWS = ["by-name", "shop:item", "tests.features_project.views.ok"]
    headers = {"HTTP_X_REQUEST_START": f"t={time.time() - 0.05:.3f}"}
    c = client()
    c.get("/aok")  # every family's children exist before the excluded request
    before = _http_samples()
    if mode == "sync":
        response = c.get(path, **headers)
    else:
        import asyncio

        response = asyncio.run(AsyncClient().get(path, **headers))
    assert response.status_code == 200
    assert _http_samples() == before, how


def test_path_exclusions_are_decided_before_the_view_resolves(routes):
    routes.PROMETHEUS_EXCLUDE_PATHS = [r"^/nowhere"]
    before = _http_samples()
    assert client().get("/nowhere/at/all").status_code == 404
    assert _http_samples() == before


def test_excluding_nothing_changes_nothing_else(routes):
    routes.PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$"]
    d = Delta()
    client().get("/ok")
    assert d("django_http_requests_before_middlewares_total") == 1
    vtm = "django_http_requests_total_by_view_transport_method_total"
    assert d(vtm, view="ok", transport="http", method="GET") == 1
    assert d(ROUTE, route="ok", method="GET", status="200") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_request_recorded_on_the_deferred_path_counts_as_on_the_default_path(routes, mode):
    # A view exclusion is configured (the request-time counts wait for the view), and misses:
    # every upstream family counts the request once, with the same labels as with no feature on.
    routes.PROMETHEUS_EXCLUDE_VIEWS = ["by-name"]
    headers = {"X-Requested-With": "XMLHttpRequest"}
    path = "/ok" if mode == "sync" else "/aok"
    view = path[1:]
    for _ in range(2):  # the second one as the first: nothing left over from the first
        d = Delta()
        if mode == "sync":
            response = client().post(path, b"12345", content_type="text/plain", headers=headers)
        else:
            import asyncio

            post = AsyncClient().post(path, b"12345", content_type="text/plain", headers=headers)
            response = asyncio.run(post)
        assert response.status_code == 200
        assert d("django_http_requests_before_middlewares_total") == 1
        assert d("django_http_requests_total_by_method_total", method="POST") == 1
        assert d("django_http_requests_total_by_transport_total", transport="http") == 1
        vtm = "django_http_requests_total_by_view_transport_method_total"
        assert d(vtm, view=view, transport="http", method="POST") == 1
        assert d("django_http_ajax_requests_total") == 1
        assert d("django_http_requests_body_total_bytes_count") == 1
        assert d("django_http_requests_body_total_bytes_sum") == 5
        by_status = "django_http_responses_total_by_status_view_method_total"
        assert d(by_status, status="200", view=view, method="POST") == 1
        assert d("django_http_requests_latency_seconds_by_view_method_count", view=view, method="POST") == 1
        assert d(ROUTE, route=view, method="POST", status="200") == 1
    d = Delta()
    client().get("/by-name")  # excluded: nothing, also after a recorded request on the thread
    assert d("django_http_requests_total_by_method_total", method="GET") == 0
    assert d("django_http_requests_before_middlewares_total") == 0


def test_do_not_track_applied_after_the_middlewares_are_built(settings):
    features._views_marked = False
    features.install()
    assert _http.get_features() is None
    c = client()
    c.get("/ok")  # the middlewares exist now

    from django_prometheus.decorators import do_not_track

    def late(request):  # pragma: no cover - only marked
        raise AssertionError

    assert do_not_track(late) is late
    installed = _http.get_features()
    assert installed is not None and installed.defer
    before = _http_samples()
    assert c.get("/untracked").status_code == 200
    assert _http_samples() == before


def test_do_not_track_keeps_an_async_view_async():
    from asgiref.sync import iscoroutinefunction

    from django_prometheus.decorators import do_not_track

    async def view(request):  # pragma: no cover - only marked
        return None

    assert iscoroutinefunction(do_not_track(view))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PROMETHEUS_EXCLUDE_PATHS", "^/metrics$", "must be a list"),
        ("PROMETHEUS_EXCLUDE_PATHS", ["(unclosed"], "is not a regex"),
        ("PROMETHEUS_EXCLUDE_PATHS", [3], "non-empty strings"),
        ("PROMETHEUS_EXCLUDE_VIEWS", "ok", "must be a list"),
        ("PROMETHEUS_ROUTE_METRICS", "yes", "True or False"),
    ],
)
def test_bad_settings_are_a_clear_error_and_a_system_check(settings, monkeypatch, name, value, message):
    # as settings.py would have them: the app's start-up raises, ``manage.py check`` reports
    from django.conf import settings as live

    monkeypatch.setattr(live, name, value, raising=False)  # no setting_changed
    with pytest.raises(ImproperlyConfigured, match=message):
        features.install()
    errors = check_settings()
    assert [e.id for e in errors] == ["django_prometheus.E002"] and message in errors[0].msg
    monkeypatch.undo()
    assert check_settings() == []


# --- the extension path --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_extension_path_honours_path_exclusions(routes, mode):
    routes.MIDDLEWARE = [
        "tests.features_project.custom.LabelledBefore",
        "tests.features_project.custom.LabelledAfter",
    ]
    routes.PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$"]
    routes.PROMETHEUS_EXCLUDE_VIEWS = ["ok"]
    d = Delta()
    if mode == "sync":
        c = client()
        assert c.get("/metrics").status_code == 200
        assert c.get("/ok").status_code == 200
        assert c.get("/status/201").status_code == 201
    else:
        import asyncio

        async def run():
            c = AsyncClient()
            assert (await c.get("/metrics")).status_code == 200
            assert (await c.get("/ok")).status_code == 200
            assert (await c.get("/status/201")).status_code == 201

        asyncio.run(run())
    # the hooks never saw /metrics (path); /ok (a view exclusion) they counted on its way in
    assert d("django_http_requests_before_middlewares_total") == 2
    assert d("django_http_responses_total_by_status_total", status="201") == 1
    vtm = "django_http_requests_total_by_view_transport_method_total"
    assert d(vtm, view="prometheus-django-metrics", transport="http", method="GET") == 0
    assert d(vtm, view="ok", transport="http", method="GET") == 1
    # the features honour both
    assert d(ROUTE, route="status/<int:code>", method="GET", status="201") == 1
    assert d(ROUTE, route="ok", method="GET", status="200") == 0
    assert d(ROUTE, route="metrics", method="GET", status="200") == 0


# --- in-flight -----------------------------------------------------------------------------------


def test_in_flight_counts_the_request_while_it_runs_and_releases_it(settings):
    settings.PROMETHEUS_INFLIGHT_METRICS = True
    c = client()
    assert c.get("/probe").content == b"1.0"
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "GET"}) == 0
    assert c.get("/boom").status_code == 500
    assert c.post("/probe").content == b"1.0"
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "GET"}) == 0
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "POST"}) == 0


def test_in_flight_waits_for_a_streaming_response_to_close(settings):
    settings.PROMETHEUS_INFLIGHT_METRICS = True
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from django.test import RequestFactory

    # As Django's test client does: the suite's DB connections are not this test's to close.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        _stream_through_wsgi(WSGIHandler, RequestFactory)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _stream_through_wsgi(WSGIHandler, RequestFactory):
    handler = WSGIHandler()
    environ = RequestFactory().get("/short-stream").environ
    started = []
    body = handler(environ, lambda status, headers: started.append(status))
    assert started == ["200 OK"]
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "GET"}) == 1
    assert b"".join(body) == b"abc"
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "GET"}) == 1  # sent, not yet closed
    body.close()
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "GET"}) == 0
    body.close()  # closing twice releases once
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "GET"}) == 0


def test_in_flight_releases_a_request_whose_get_response_raises(settings):
    settings.PROMETHEUS_INFLIGHT_METRICS = True
    from django.test import RequestFactory

    from django_prometheus.middleware import PrometheusBeforeMiddleware

    def explode(request):
        raise KeyError("below the middlewares")

    mw = PrometheusBeforeMiddleware(explode)
    with pytest.raises(KeyError):
        mw(RequestFactory().get("/ok"))
    assert REGISTRY.get_sample_value(INFLIGHT, {"method": "GET"}) == 0


# --- queue time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "scale"),
    [
        ("HTTP_X_REQUEST_START", "t=s"),
        ("HTTP_X_REQUEST_START", "ms"),
        ("HTTP_X_QUEUE_START", "t=us"),
        ("HTTP_X_QUEUE_START", "s"),
    ],
)
def test_queue_time_from_the_proxy_headers(settings, header, scale):
    settings.PROMETHEUS_QUEUE_TIME_METRICS = True
    stamp = time.time() - 0.25
    unit = scale.removeprefix("t=")
    value = {"s": f"{stamp:.3f}", "ms": str(int(stamp * 1e3)), "us": str(int(stamp * 1e6))}[unit]
    if scale.startswith("t="):
        value = "t=" + value
    d = Delta()
    client().get("/ok", **{header: value})
    waited = time.time() - stamp  # the longest the queue time can be, however slow the machine
    assert d(QUEUE + "_count") == 1
    assert 0.2 < d(QUEUE + "_sum") <= waited + 0.001  # (the header is rounded to the ms at most)


@pytest.mark.parametrize(
    "value",
    [None, "", "t=", "garbage", "t=abc", "-5", "0", "nan", "inf", "1e400", "t=" + "9" * 100, "FUTURE", "OLD"],
)
def test_queue_time_ignores_bad_headers(settings, value):
    settings.PROMETHEUS_QUEUE_TIME_METRICS = True
    if value == "FUTURE":
        value = f"{time.time() + 60:.3f}"
    elif value == "OLD":
        value = f"{time.time() - 7200:.3f}"
    headers = {} if value is None else {"HTTP_X_REQUEST_START": value}
    d = Delta()
    assert client().get("/ok", **headers).status_code == 200
    assert d(QUEUE + "_count") == 0
