"""The HTTP middlewares through Django's test client: every metric, the fixes, bad input."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest
from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from django_prometheus import middleware as mw
from django_prometheus.db import per_request
from django_prometheus.http.metrics import SPECS
from django_prometheus.middleware import Metrics, PrometheusAfterMiddleware, PrometheusBeforeMiddleware
from tests.http_project.checks import (
    CONTRACT_FAMILIES,
    MIDDLEWARE,
    TEMPLATES,
    Delta,
    expected_samples,
    label_values,
)

pytestmark = [
    pytest.mark.urls("tests.http_project.urls"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:asgiref"),
]

LAT = "django_http_requests_latency_seconds_by_view_method"


@pytest.fixture(autouse=True)
def _project(settings):
    settings.MIDDLEWARE = MIDDLEWARE
    settings.TEMPLATES = TEMPLATES


def client() -> Client:
    # A new client loads the middleware anew (so settings overrides apply).
    return Client(raise_request_exception=False)


def test_a_plain_request_records_every_default_metric_once():
    d = Delta()
    response = client().get("/ok")
    assert response.status_code == 200
    assert d("django_http_requests_before_middlewares_total") == 1
    assert d("django_http_responses_before_middlewares_total") == 1
    assert d("django_http_requests_latency_including_middlewares_seconds_count") == 1
    assert d("django_http_requests_total_by_method_total", method="GET") == 1
    assert d("django_http_requests_total_by_transport_total", transport="http") == 1
    assert (
        d(
            "django_http_requests_total_by_view_transport_method_total",
            view="ok",
            transport="http",
            method="GET",
        )
        == 1
    )
    assert d("django_http_requests_body_total_bytes_count") == 1
    assert d("django_http_requests_body_total_bytes_sum") == 0
    assert d("django_http_responses_total_by_status_total", status="200") == 1
    assert (
        d("django_http_responses_total_by_status_view_method_total", status="200", view="ok", method="GET")
        == 1
    )
    assert d("django_http_responses_body_total_bytes_count") == 1
    assert d("django_http_responses_body_total_bytes_sum") == len(b"ok")
    assert d("django_http_responses_body_total_bytes_bucket", le="2.0") == 1
    assert d("django_http_responses_total_by_charset_total", charset="utf-8") == 1
    assert d(LAT + "_count", view="ok", method="GET") == 1
    assert d("django_http_responses_streaming_total") == 0
    assert d("django_http_ajax_requests_total") == 0
    assert d("django_http_requests_unknown_latency_total") == 0
    assert d("django_http_requests_unknown_latency_including_middlewares_total") == 0


def test_the_default_configuration_takes_the_fast_path():
    handler = Client().handler
    handler.load_middleware()
    before = handler._middleware_chain.__wrapped__
    assert isinstance(before, PrometheusBeforeMiddleware) and before._recorder is not None
    after = before.get_response.__wrapped__
    assert isinstance(after, PrometheusAfterMiddleware) and after._recorder is not None


def test_https_ajax_and_a_request_body_are_recorded():
    d = Delta()
    body = b"x" * 1000
    response = client().post(
        "/echo",
        body,
        content_type="application/octet-stream",
        secure=True,
        headers={"x-requested-with": "XMLHttpRequest"},
    )
    assert response.content == body
    assert d("django_http_requests_total_by_transport_total", transport="https") == 1
    assert (
        d(
            "django_http_requests_total_by_view_transport_method_total",
            view="echo",
            transport="https",
            method="POST",
        )
        == 1
    )
    assert d("django_http_ajax_requests_total") == 1
    assert d("django_http_requests_body_total_bytes_sum") == 1000
    assert d("django_http_requests_body_total_bytes_bucket", le="512.0") == 0
    assert d("django_http_requests_body_total_bytes_bucket", le="1024.0") == 1


def test_charset_label_is_the_responses_charset():
    d = Delta()
    response = client().get("/latin")
    assert response.charset == "iso-8859-1"
    assert d("django_http_responses_total_by_charset_total", charset="iso-8859-1") == 1


def test_template_responses_are_counted_by_template_name():
    d = Delta()
    assert client().get("/template").content == b"Hello world"
    assert d("django_http_responses_total_by_templatename_total", templatename="hello.html") == 1


def test_streaming_response_is_counted_and_has_no_body_size():
    d = Delta()
    response = client().get("/stream")
    assert b"".join(response.streaming_content) == b"abc"
    assert d("django_http_responses_streaming_total") == 1
    assert d("django_http_responses_body_total_bytes_count") == 0
    assert d("django_http_responses_total_by_charset_total", charset="utf-8") == 1


def test_unresolved_and_unnamed_views():
    d = Delta()
    assert client().get("/nowhere").status_code == 404
    assert client().get("/unnamed").status_code == 200
    assert (
        d(
            "django_http_responses_total_by_status_view_method_total",
            status="404",
            view="<unnamed view>",
            method="GET",
        )
        == 1
    )
    # An unnamed route is labelled with the view's dotted path, as Django names it.
    assert d(LAT + "_count", view="tests.http_project.views.unnamed", method="GET") == 1


# --- deliberate fixes (docs/install.md, What differs) ---------------------------------------------


@pytest.mark.parametrize("content_length", ["abc", "-5", "1e3", " "])
def test_fix3_malformed_content_length_never_breaks_a_request(content_length):
    d = Delta()
    response = client().get("/ok", CONTENT_LENGTH=content_length)
    assert response.status_code == 200
    assert d("django_http_requests_total_by_method_total", method="GET") == 1
    # Ignored, not observed as 0 or as a negative size.
    assert d("django_http_requests_body_total_bytes_count") == 0
    assert d("django_http_requests_body_total_bytes_sum") == 0


def test_fix4_latency_by_view_uses_the_sanitised_method():
    d = Delta()
    assert client().generic("BREW", "/ok").status_code == 200
    assert d(LAT + "_count", view="ok", method="<invalid method>") == 1
    assert "BREW" not in label_values(LAT + "_count", "method")


def test_fix5_a_failing_view_is_observed_once_in_latency_and_its_exception_counted():
    d = Delta()
    assert client().get("/boom").status_code == 500
    assert d(LAT + "_count", view="boom", method="GET") == 1
    assert d("django_http_exceptions_total_by_type_total", type="Boom") == 1
    assert d("django_http_exceptions_total_by_view_total", view="boom") == 1
    assert d("django_http_responses_total_by_status_total", status="500") == 1


# --- bad input ----------------------------------------------------------------------------------


def test_a_thousand_made_up_methods_add_at_most_one_method_value():
    names = ["django_http_requests_total_by_method_total", LAT + "_count"]
    before = {n: label_values(n, "method") for n in names}
    c = client()
    for i in range(1000):
        assert c.generic(f"X{i}FOO", "/ok").status_code == 200
    for n in names:
        assert label_values(n, "method") - before[n] <= {"<invalid method>"}


def test_non_ascii_and_very_long_paths_do_not_become_labels():
    d = Delta()
    c = client()
    assert c.get("/slug/ünïcødé-✓").content == "ünïcødé-✓".encode()
    assert c.get("/" + "ä" * 5000).status_code == 404
    assert c.get("/slug/" + "x" * 20000).status_code == 200
    assert (
        d("django_http_responses_total_by_status_view_method_total", status="200", view="slug", method="GET")
        == 2
    )
    assert (
        d(
            "django_http_responses_total_by_status_view_method_total",
            status="404",
            view="<unnamed view>",
            method="GET",
        )
        == 1
    )
    views = label_values("django_http_responses_total_by_status_view_method_total", "view")
    assert not any("ä" in v or "x" * 100 in v or "ü" in v for v in views)


class _NotAnHttpResponse:
    """What a view may return that only quacks like a streaming response."""

    status_code = 200
    streaming = True

    def __iter__(self):
        return iter([b"chunk"])


def test_a_streaming_object_that_is_not_an_http_response():
    d = Delta()
    thing = _NotAnHttpResponse()
    before = PrometheusBeforeMiddleware(lambda request: thing)
    after = PrometheusAfterMiddleware(before)
    assert after(RequestFactory().get("/ok")) is thing
    assert d("django_http_responses_streaming_total") == 1
    assert d("django_http_responses_total_by_status_total", status="200") == 1
    assert d("django_http_responses_body_total_bytes_count") == 0  # no content to measure
    assert d("django_http_responses_before_middlewares_total") == 1


def test_a_failure_inside_our_recording_is_logged_not_raised(caplog, settings):
    # A broken setting makes request.is_secure() raise inside our recording code.
    settings.SECURE_PROXY_SSL_HEADER = "not-a-pair"
    d = Delta()
    with caplog.at_level(logging.ERROR, logger="django_prometheus"):
        response = client().get("/ok")
    assert response.status_code == 200 and response.content == b"ok"
    assert any("could not record" in r.getMessage() for r in caplog.records)
    # What could be recorded still was.
    assert d("django_http_requests_before_middlewares_total") == 1


def test_a_response_that_breaks_our_recording_is_returned_unchanged(caplog):
    class Broken(HttpResponse):
        @property
        def status_code(self):
            raise RuntimeError("no status")

        @status_code.setter
        def status_code(self, value):
            pass

    broken = Broken(b"x")
    after = PrometheusAfterMiddleware(lambda request: broken)
    with caplog.at_level(logging.ERROR, logger="django_prometheus"):
        assert after(RequestFactory().get("/ok")) is broken
    assert any("could not record" in r.getMessage() for r in caplog.records)


# --- upstream's hook methods, called directly ----------------------------------------------------


def test_process_response_without_process_request_counts_unknown_latency():
    d = Delta()
    request = RequestFactory().get("/ok")
    response = HttpResponse(b"ok")
    PrometheusBeforeMiddleware(lambda r: response).process_response(request, response)
    PrometheusAfterMiddleware(lambda r: response).process_response(request, response)
    assert d("django_http_requests_unknown_latency_including_middlewares_total") == 1
    assert d("django_http_requests_unknown_latency_total") == 1


def test_helpers_behave_as_upstream():
    after = PrometheusAfterMiddleware(lambda r: None)
    rf = RequestFactory()
    assert after._transport(rf.get("/", secure=True)) == "https"
    assert after._transport(rf.get("/")) == "http"
    assert after._method(rf.generic("PATCH", "/")) == "PATCH"
    assert after._method(rf.generic("BREW", "/")) == "<invalid method>"
    assert after._get_view_name(rf.get("/")) == "<unnamed view>"


# --- the Metrics object and exposition ------------------------------------------------------------


def test_metrics_is_a_singleton_of_prometheus_client_metrics():
    metrics = Metrics.get_instance()
    assert Metrics.get_instance() is metrics
    for attr, (cls, name, _doc, labels, *_rule) in SPECS.items():
        metric = getattr(metrics, attr)
        assert isinstance(metric, MetricWrapperBase)
        assert metric._name == (
            name[: -len("_total")] if cls is mw.Counter and name.endswith("_total") else name
        )
        assert tuple(metric._labelnames) == labels
    assert len(SPECS) == len(CONTRACT_FAMILIES) == 19


def test_latency_buckets_are_read_when_the_middleware_is_built(settings):
    settings.PROMETHEUS_LATENCY_BUCKETS = (0.5, 1.0, float("inf"))
    client().get("/ok")
    metrics = Metrics.get_instance()
    assert list(metrics.requests_latency_by_view_method._upper_bounds) == [0.5, 1.0, float("inf")]
    assert list(metrics.requests_latency_before._upper_bounds) == [0.5, 1.0, float("inf")]
    assert REGISTRY.get_sample_value(LAT + "_bucket", {"view": "ok", "method": "GET", "le": "0.5"}) == 1
    del settings.PROMETHEUS_LATENCY_BUCKETS
    client().get("/ok")
    assert metrics.requests_latency_by_view_method._upper_bounds[0] == 0.01


def test_exposed_sample_and_label_names_match_the_contract_after_a_mixed_scenario():
    c = client()
    c.get("/ok")
    c.post("/echo", b"abc", content_type="text/plain", headers={"x-requested-with": "XMLHttpRequest"})
    c.get("/boom")
    c.get("/stream")
    c.get("/template")
    c.get("/nowhere")
    c.generic("BREW", "/ok")
    # PROMETHEUS_REQUEST_DB_METRICS's families stay registered once a test earlier in this
    # process turned the setting on (as in a real process): they are opt-in, not the contract's.
    opt_in = {family._name for family in per_request._families or ()}
    seen = {
        (s.name, tuple(sorted(s.labels)))
        for family in REGISTRY.collect()
        if family.name.startswith("django_http_") and family.name not in opt_in
        for s in family.samples
    }
    assert seen == expected_samples()


# --- async --------------------------------------------------------------------------------------


def test_async_requests_record_like_sync_ones():
    d = Delta()

    async def scenario():
        c = AsyncClient(raise_request_exception=False)
        return [(await c.get(path)).status_code for path in ("/aok", "/ok", "/aboom", "/template")]

    assert asyncio.run(scenario()) == [200, 200, 500, 200]
    assert d("django_http_requests_before_middlewares_total") == 4
    assert (
        d(
            "django_http_requests_total_by_view_transport_method_total",
            view="aok",
            transport="http",
            method="GET",
        )
        == 1
    )
    assert (
        d("django_http_responses_total_by_status_view_method_total", status="200", view="ok", method="GET")
        == 1
    )
    assert d("django_http_responses_body_total_bytes_count") == 4
    assert d(LAT + "_count", view="aboom", method="GET") == 1
    assert d("django_http_exceptions_total_by_type_total", type="ValueError") == 1
    assert d("django_http_exceptions_total_by_view_total", view="aboom") == 1
    assert d("django_http_responses_total_by_templatename_total", templatename="hello.html") == 1


def test_under_asgi_no_hook_is_wrapped_in_sync_to_async():
    handler = ASGIHandler()  # loads the middleware in async mode, as a server would
    before = handler._middleware_chain.__wrapped__
    after = before.get_response.__wrapped__
    assert before.async_mode and after.async_mode
    # asgiref, not inspect: before Python 3.12 markcoroutinefunction is invisible to inspect.
    assert iscoroutinefunction(before) and iscoroutinefunction(after)
    hooks = [*handler._view_middleware, *handler._template_response_middleware]
    assert len(hooks) == 2
    for hook in hooks:
        # Django wraps a sync hook in sync_to_async (by asgiref's rule, as here); ours are the
        # middleware's own (native coroutine methods, or the core's awaitable-returning view hook).
        assert iscoroutinefunction(hook) and isinstance(hook.__self__, PrometheusAfterMiddleware), hook
    # Django runs exception middleware synchronously in both modes: ours is plain sync, not wrapped.
    (on_exception,) = handler._exception_middleware
    assert not inspect.iscoroutinefunction(on_exception) and on_exception == after.process_exception


def test_settings_changed_after_the_middleware_is_built_apply(settings):
    # The recorders read a snapshot of DEFAULT_CHARSET and SECURE_PROXY_SSL_HEADER that
    # Django's setting_changed keeps current.
    c = client()
    assert c.get("/ok").status_code == 200  # builds the middleware
    settings.DEFAULT_CHARSET = "latin-1"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    d = Delta()
    assert c.get("/ok", headers={"x-forwarded-proto": "https"}).status_code == 200
    assert d("django_http_responses_total_by_charset_total", charset="latin-1") == 1
    assert d("django_http_requests_total_by_transport_total", transport="https") == 1
