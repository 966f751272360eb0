"""The features' core rules beyond the protocol, compiled and pure side by side: who owns a request,
the bounded exclusion caches, the queue stamp's forms, the exemplar guard and the C seam."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import resolve
from django_prometheus._core import _features, _http
from prometheus_client import REGISTRY

from tests.http_project.checks import MIDDLEWARE
from tests.test_core_features import _close, _config, _request

pytestmark = pytest.mark.urls("tests.features_project.urls")


@pytest.fixture(autouse=True)
def _nothing_left_installed():
    yield
    from django_prometheus.http import features

    features._views_marked = False
    features.install()


def _routes(config) -> dict:
    return {k: v.get() for k, v in config.route_requests.__self__.children.items()}


def test_the_owners_table_empties_as_requests_end_or_fail(twin):
    features_mod, cells = twin.features, twin.cells
    features = features_mod.Features(_config(cells))
    before = features_mod.owned()
    request = _request("/ok")
    state = features.begin(request, True)
    assert features_mod.owned() == before + 1
    assert features.begin(request, False) is features_mod.INNER
    features.end(request, HttpResponse(b"ok"), state, True)
    assert features_mod.owned() == before
    request = _request("/boom")
    features.abort(request, features.begin(request, True), True)
    assert features_mod.owned() == before
    assert not hasattr(request, features_mod.KEY)  # the table, not an attribute


def test_interleaved_requests_keep_their_own_owner(twin):
    # ASGI interleaves requests on one thread; a sync view hops to another thread: the inner
    # middleware of each request finds its own outer state, wherever it runs.
    features_mod, cells = twin.features, twin.cells
    config = _config(cells)
    features = features_mod.Features(config)
    a, b = _request("/ok"), _request("/shop/items/1/")
    state_a = features.begin(a, True)
    state_b = features.begin(b, True)
    inner = []
    thread = threading.Thread(target=lambda: inner.append(features.begin(a, False)))
    thread.start()
    thread.join()
    assert inner == [features_mod.INNER]
    assert features.begin(b, False) is features_mod.INNER
    response_b, response_a = HttpResponse(b"b"), HttpResponse(b"a")
    features.end(b, response_b, state_b, True)
    features.end(a, response_a, state_a, True)
    assert _routes(config) == {("ok", "GET", "200"): 1.0, ("shop/items/<int:pk>/", "GET", "200"): 1.0}
    gauge = config.inflight.__self__.children[("GET",)]
    assert gauge.get() == 2
    _close(response_a)
    _close(response_b)
    assert gauge.get() == 0


class _ValueRequest(HttpRequest):
    # A request type with its own equality: never a key of the owners' table.
    def __eq__(self, other):
        return isinstance(other, _ValueRequest)

    def __hash__(self):
        return 0


def test_a_request_type_with_its_own_hash_carries_its_state_as_an_attribute(twin):
    features_mod, cells = twin.features, twin.cells
    config = _config(cells)
    features = features_mod.Features(config)
    first, second = _ValueRequest(), _ValueRequest()
    for request in (first, second):
        request.method, request.path_info = "GET", "/ok"
        request.resolver_match = resolve("/ok")
    before = features_mod.owned()
    state_first = features.begin(first, True)
    state_second = features.begin(second, True)  # equal to ``first``, yet a request of its own
    assert state_second is not features_mod.INNER and features_mod.owned() == before
    assert getattr(first, features_mod.KEY) is state_first
    assert features.begin(first, False) is features_mod.INNER
    features.end(first, HttpResponse(), state_first, True)
    features.end(second, HttpResponse(), state_second, True)
    assert _routes(config) == {("ok", "GET", "200"): 2.0}


def test_hostile_paths_keep_the_path_cache_bounded_and_the_answers_right(twin):
    features_mod, http, cells = twin.features, twin.http, twin.cells
    features = features_mod.Features(_config(cells, exclude_paths=re.compile(r"^/metrics$")))
    metrics = _request("/metrics")
    assert features.begin(metrics, True) is http.SKIP
    for i in range(10_000):
        request = _request(f"/probe/{i}")
        assert not features.path_excluded(request)
        features.end(request, HttpResponse(), features.begin(request, True), True)
    assert features.cache_sizes()["paths"] <= features_mod.PATH_CACHE_MAX
    assert features.path_excluded(_request("/metrics"))
    assert features.begin(_request("/metrics"), False) is http.SKIP
    assert features.cache_sizes()["paths"] <= features_mod.PATH_CACHE_MAX
    long = _request("/" + "x" * 5_000)
    assert not features.path_excluded(long)  # searched, not kept
    assert features.cache_sizes()["paths"] <= features_mod.PATH_CACHE_MAX


def test_the_view_decision_is_per_function_and_view_name(twin):
    # One view function under two names (shop:item and shop:legacy): excluding one name
    # must not exclude the other, whichever was decided first.
    features_mod, http, cells = twin.features, twin.http, twin.cells
    config = _config(cells, exclude_views=frozenset({"shop:legacy"}), defer=True)
    features = features_mod.Features(config)
    for _ in range(3):
        for path, excluded in (("/shop/items/1/", False), ("/shop/legacy/1/", True)):
            request = _request(path)
            state = features.begin(request, True)
            assert features.excluded(request) is excluded
            assert (features.end(request, HttpResponse(), state, True) is http.SKIP) is excluded
    assert _routes(config) == {("shop/items/<int:pk>/", "GET", "200"): 3.0}
    assert features.cache_sizes()["views"] == 1


def test_the_queue_stamp_forms_read_alike_in_both_twins(compiled_twin, pure_twin):
    now = 1_800_000_000.5
    forms = [
        "t=1800000000.25",
        "1800000000.25",
        "t=1800000000250",
        "1800000000250000",
        " 1800000000.25",
        "t=1800000000.25 ",
        "t=1_800_000_000.25",
        "t=1.8000000002e9",
        "t=.5",
        "t=+1800000000.25",
        "t=0x10",
        "t=1800000000.25x",
        "t==1800000000.25",
        "t=١٨٠٠٠٠٠٠٠٠",
        "t=",
        "T=1800000000.25",
    ]
    compiled = [compiled_twin.features.queue_seconds(value, now) for value in forms]
    pure = [pure_twin.features.queue_seconds(value, now) for value in forms]
    assert [g is None for g in compiled] == [p is None for p in pure]
    assert [g for g in compiled if g is not None] == pytest.approx([p for p in pure if p is not None])
    assert pure[0] == pytest.approx(0.25) and pure[4] == pytest.approx(0.25)
    assert pure[6] == pytest.approx(0.25)


@pytest.mark.parametrize("call", ["guard", "capture"])
def test_the_exemplar_guard_answers_none_without_asking_while_no_span_is_current(twin, call):
    # Histograms call the guard's bound ``capture`` (vectorcall); it answers as the guard does.
    module = twin.features
    var: contextvars.ContextVar[dict] = contextvars.ContextVar("current")
    asked = []

    def slow():
        asked.append(1)
        return {"trace_id": "t", "span_id": "s"}

    guard = module.SpanIds(var, "span-key", slow)
    ask = guard if call == "guard" else guard.capture
    assert ask() == {"trace_id": "t", "span_id": "s"} and len(asked) == 1  # unset: ask
    empty = {}
    var.set(empty)
    assert ask() is None and ask() is None and len(asked) == 1
    var.set({"span-key": object()})
    assert ask() == {"trace_id": "t", "span_id": "s"} and len(asked) == 2
    var.set(empty)
    assert ask() is None and len(asked) == 2


# --- the compiled middlewares' C seam -----------------------------------------------------------


def test_a_subclass_of_the_compiled_features_is_called_through_its_python_methods(compiled_twin, settings):
    assert _features.Features is compiled_twin.features.Features  # the compiled core is the one in use
    settings.MIDDLEWARE = MIDDLEWARE
    settings.PROMETHEUS_ROUTE_METRICS = True
    from django_prometheus.http import features

    features.install()
    assert type(_http.get_features()) is _features.Features
    ends = []

    class Traced(_features.Features):
        def end(self, request, response, state, outer):
            ends.append(outer)
            return super().end(request, response, state, outer)

    config = features._Config()
    made = features.families()
    config.route_requests = made["route_requests"].labels
    config.route_duration = made["route_duration"].labels
    _http.set_features(Traced(config))
    before = REGISTRY.get_sample_value(
        "django_http_route_requests_total", {"route": "ok", "method": "GET", "status": "200"}
    )
    assert Client().get("/ok").status_code == 200
    assert sorted(ends) == [False, True]  # the Python protocol, once per middleware
    after = REGISTRY.get_sample_value(
        "django_http_route_requests_total", {"route": "ok", "method": "GET", "status": "200"}
    )
    assert after == (before or 0) + 1


@pytest.mark.parametrize("asynchronous", [False, True])
def test_excluded_paths_leave_nothing_in_the_owners_table(settings, asynchronous):
    settings.MIDDLEWARE = MIDDLEWARE
    settings.PROMETHEUS_EXCLUDE_PATHS = [r"^/ok$", r"^/aok$"]
    settings.PROMETHEUS_ROUTE_METRICS = True
    before = _features._impl.owned()
    if asynchronous:
        from django.test import AsyncClient

        async def go():
            for path in ("/aok", "/ok", "/shop/items/1/"):
                assert (await AsyncClient().get(path)).status_code == 200

        asyncio.run(go())
    else:
        for path in ("/ok", "/shop/items/1/", "/boom"):
            Client(raise_request_exception=False).get(path)
    assert _features._impl.owned() == before
