"""The features' core (``_core/_features``), compiled and pure side by side, on real Django requests."""

from __future__ import annotations

import importlib.util
import logging
import time
from types import SimpleNamespace

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import RequestFactory
from django.urls import resolve
from django_prometheus._core import _cells, _features

pytestmark = pytest.mark.urls("tests.features_project.urls")


@pytest.fixture(autouse=True)
def _nothing_left_installed():
    yield
    from django_prometheus.http import features

    features._views_marked = False  # the project's do_not_track marked views on import
    features.install()


class Family:
    """A labelled family of real core cells: ``labels(*values)`` -> cell, and every child."""

    def __init__(self, make):
        self.make, self.children = make, {}

    def labels(self, *values):
        return self.children.setdefault(values, self.make())


def _config(cells, **overrides):
    config = SimpleNamespace(
        route_requests=Family(cells.Counter).labels,
        route_duration=Family(lambda: cells.Histogram((0.1, 1.0, float("inf")))).labels,
        group_status=False,
        inflight=Family(cells.Gauge).labels,
        queue=cells.Histogram((0.1, 1.0, float("inf"))),
        exclude_paths=None,
        exclude_views=frozenset(),
        defer=False,
        db_begin=None,
        db_end=None,
        db_discard=None,
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def _close(response) -> None:
    # What HttpResponseBase.close() does for its closers, without request_finished (which
    # closes the test's database connections).
    closers = list(response._resource_closers)
    for closer in closers:
        closer()
    for closer in closers:
        closer()  # a closer called twice releases once


def _request(path: str, method: str = "GET", **meta):
    request = RequestFactory().generic(method, path, **meta)
    try:
        request.resolver_match = resolve(path)
    except Exception:
        pass
    return request


def test_the_route_rule(twin):
    features = twin.features
    assert features.route(_request("/shop/items/3/")) == "shop/items/<int:pk>/"
    assert features.route(_request("/shop/legacy/3/")) == "shop/legacy/(?P<pk>[0-9]+)/$"
    assert features.route(_request("/nowhere")) == "<unmatched>"
    assert features.route(object()) == "<unmatched>"
    from django_prometheus.http.routes import route

    assert route(_request("/shop/items/3/")) == features.route(_request("/shop/items/3/"))
    if importlib.util.find_spec("ninja") is not None:  # absent on free-threaded CPython
        assert route(_request("/ninja/things/1")) == features.route(_request("/ninja/things/1"))


def test_status_labels(twin):
    features = twin.features
    assert [features.status_label(c, True) for c in (101, 200, 302, 404, 503)] == [
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
    ]
    assert features.status_label(200, False) == "200"
    assert features.status_label(999, True) == "999"


def test_queue_seconds_tells_units_apart_and_refuses_nonsense(twin):
    features = twin.features
    now = 1_800_000_000.5
    assert features.queue_seconds("t=1800000000.25", now) == pytest.approx(0.25)
    assert features.queue_seconds("1800000000250", now) == pytest.approx(0.25)  # ms
    assert features.queue_seconds("t=1800000000250000", now) == pytest.approx(0.25)  # µs
    for bad in (
        None,
        b"1",
        "",
        "t=",
        "x",
        "-1",
        "0",
        "nan",
        "inf",
        "1e400",
        "9" * 50,
        "1800000001.5",
        "1799990000",
    ):
        assert features.queue_seconds(bad, now) is None, bad


def test_one_owner_per_request_and_inner_follows_outer(twin):
    features_mod, cells = twin.features, twin.cells
    config = _config(cells)
    features = features_mod.Features(config)
    request = _request("/ok", HTTP_X_QUEUE_START=f"t={time.time() - 0.2:.3f}")
    outer = features.begin(request, True)
    inner = features.begin(request, False)
    assert inner is features_mod.INNER and outer is not inner
    gauge = config.inflight.__self__.children[("GET",)]
    assert gauge.get() == 1
    response = HttpResponse(b"ok")
    assert features.end(request, response, inner, False) is None
    assert features.end(request, response, outer, True) is None
    routes = config.route_requests.__self__.children
    assert {k: v.get() for k, v in routes.items()} == {("ok", "GET", "200"): 1.0}
    assert config.queue.count == 1 and 0.1 < config.queue.sum < 5
    assert gauge.get() == 1  # until the response is closed
    _close(response)
    _close(response)
    assert gauge.get() == 0


def test_path_and_view_exclusions(twin):
    import re

    features_mod, http, cells = twin.features, twin.http, twin.cells
    config = _config(
        cells, exclude_paths=re.compile(r"^/metrics$"), exclude_views=frozenset({"shop:item"}), defer=True
    )
    features = features_mod.Features(config)
    metrics = _request("/metrics")
    assert features.begin(metrics, True) is http.SKIP
    assert features.begin(metrics, False) is http.SKIP
    assert features.excluded(metrics) and features.path_excluded(metrics)
    item = _request("/shop/items/1/")
    state = features.begin(item, True)
    assert not features.path_excluded(item) and features.excluded(item)
    assert features.end(item, HttpResponse(), features.begin(item, False), False) is http.SKIP
    assert features.end(item, HttpResponse(), state, True) is http.SKIP
    untracked = _request("/untracked")  # do_not_track
    state = features.begin(untracked, True)
    assert features.end(untracked, HttpResponse(), state, True) is http.SKIP
    assert config.route_requests.__self__.children == {}
    assert all(g.get() == 0 for g in config.inflight.__self__.children.values())


def test_per_request_db_accounting_is_begun_and_ended_with_the_route(twin):
    features_mod, cells = twin.features, twin.cells
    calls = []
    config = _config(
        cells,
        db_begin=lambda: calls.append("begin") or len(calls),
        db_end=lambda token, route: calls.append(("end", token, route)),
        db_discard=lambda token: calls.append(("discard", token)),
        exclude_views=frozenset({"by-name"}),
        defer=True,
    )
    features = features_mod.Features(config)
    for path in ("/shop/items/1/", "/nowhere", "/by-name"):
        request = _request(path)
        state = features.begin(request, True)
        features.begin(request, False)  # the inner middleware never begins a second accounting
        features.end(request, HttpResponse(), state, True)
    request = _request("/boom")
    features.abort(request, features.begin(request, True), True)
    assert calls == [
        "begin",
        ("end", 1, "shop/items/<int:pk>/"),
        "begin",
        ("end", 3, "<unmatched>"),
        "begin",
        ("discard", 5),
        "begin",
        ("end", 7, "boom"),
    ]


def test_a_failing_feature_never_breaks_the_request(twin, caplog):
    features_mod, cells = twin.features, twin.cells

    def broken(*values):
        raise RuntimeError("labels")

    config = _config(cells, route_requests=broken, inflight=broken)
    features = features_mod.Features(config)
    request = _request("/ok")
    with caplog.at_level(logging.ERROR, logger="django_prometheus"):
        state = features.begin(request, True)
        assert state is features_mod.INNER  # recorded as if no feature were on
        assert features.end(request, HttpResponse(), state, True) is None
        features.abort(request, state, True)
    assert any("opt-in features" in r.getMessage() for r in caplog.records)


def test_a_streaming_response_without_closers_releases_at_once(twin):
    features_mod, cells = twin.features, twin.cells
    config = _config(cells)
    features = features_mod.Features(config)
    request = _request("/short-stream")
    state = features.begin(request, True)
    features.end(request, SimpleNamespace(status_code=200), state, True)  # not an HttpResponseBase
    assert config.inflight.__self__.children[("GET",)].get() == 0
    request = _request("/short-stream")
    state = features.begin(request, True)
    response = StreamingHttpResponse(iter([b"a"]))
    features.end(request, response, state, True)
    assert config.inflight.__self__.children[("GET",)].get() == 1
    _close(response)
    assert config.inflight.__self__.children[("GET",)].get() == 0


def test_the_features_follow_the_cells_choice():
    assert _features.USE_EXTENSIONS == _cells.USE_EXTENSIONS
