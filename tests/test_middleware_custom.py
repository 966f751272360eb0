"""The extension path: a Metrics subclass adds label names, subclassed middlewares supply the values."""

from __future__ import annotations

import asyncio

import pytest
from django.test import AsyncClient, Client

from django_prometheus.middleware import Metrics, PrometheusAfterMiddleware, PrometheusBeforeMiddleware
from tests.http_project.checks import TEMPLATES, Delta, metrics_instead

pytestmark = [
    pytest.mark.urls("tests.http_project.urls"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:asgiref"),
]

# As in upstream's documentation: declared names whose metrics get two more labels.
EXTENDED = {
    "django_http_requests_latency_seconds_by_view_method",
    "django_http_responses_total_by_status_view_method",
    "django_http_requests_before_middlewares_total",  # on the Before middleware: beyond upstream
}
# What label_metric sees in metric._name (prometheus_client drops a counter's "_total").
EXTENDED_NAMES = {name.removesuffix("_total") for name in EXTENDED}


class CustomMetrics(Metrics):
    def register_metric(self, metric_cls, name, documentation, labelnames=(), **kwargs):
        if name in EXTENDED:
            if isinstance(labelnames, list):
                labelnames.extend(("view_type", "user_agent_type"))  # upstream's documented idiom
            else:
                labelnames = [*labelnames, "view_type", "user_agent_type"]
        return super().register_metric(metric_cls, name, documentation, labelnames=labelnames, **kwargs)


class CustomLabels:
    def label_metric(self, metric, request, response=None, **labels):
        if metric._name in EXTENDED_NAMES:
            agent = request.META.get("HTTP_USER_AGENT", "")
            labels = {
                "view_type": "custom",
                "user_agent_type": "bot" if "bot" in agent else "other",
                **labels,
            }
        return super().label_metric(metric, request, response=response, **labels)


class AppMetricsBeforeMiddleware(CustomLabels, PrometheusBeforeMiddleware):
    metrics_cls = CustomMetrics


class AppMetricsAfterMiddleware(CustomLabels, PrometheusAfterMiddleware):
    metrics_cls = CustomMetrics


@pytest.fixture(autouse=True)
def custom_metrics(settings):
    settings.TEMPLATES = TEMPLATES
    settings.MIDDLEWARE = [f"{__name__}.AppMetricsBeforeMiddleware", f"{__name__}.AppMetricsAfterMiddleware"]
    with metrics_instead(CustomMetrics) as instance:
        yield instance


def test_get_instance_is_per_class_as_upstream(custom_metrics):
    assert isinstance(custom_metrics, CustomMetrics)
    assert Metrics._instance is not custom_metrics and isinstance(Metrics._instance, Metrics)
    assert custom_metrics.requests_latency_by_view_method._labelnames == (
        "view",
        "method",
        "view_type",
        "user_agent_type",
    )


def test_custom_labels_on_both_middlewares():
    d = Delta()
    c = Client(raise_request_exception=False)
    assert c.get("/ok", headers={"user-agent": "somebot/1.0"}).status_code == 200
    assert c.get("/boom").status_code == 500
    assert c.generic("BREW", "/ok").status_code == 200
    extra = {"view_type": "custom"}
    assert d("django_http_requests_before_middlewares_total", user_agent_type="bot", **extra) == 1
    assert d("django_http_requests_before_middlewares_total", user_agent_type="other", **extra) == 2
    assert (
        d(
            "django_http_responses_total_by_status_view_method_total",
            status="200",
            view="ok",
            method="GET",
            user_agent_type="bot",
            **extra,
        )
        == 1
    )
    lat = "django_http_requests_latency_seconds_by_view_method_count"
    # docs/install.md, What differs, 5 (once per failing request) and 4 (sanitised method) hold
    # on this path too.
    assert d(lat, view="boom", method="GET", user_agent_type="other", **extra) == 1
    assert d(lat, view="ok", method="<invalid method>", user_agent_type="other", **extra) == 1
    assert d("django_http_exceptions_total_by_type_total", type="Boom") == 1
    # Metrics without extra labels are recorded as usual.
    assert d("django_http_requests_total_by_method_total", method="GET") == 2
    assert d("django_http_responses_body_total_bytes_count") == 3


def test_subclasses_take_the_hook_by_hook_path():
    handler = Client().handler
    handler.load_middleware()
    before = handler._middleware_chain.__wrapped__
    after = before.get_response.__wrapped__
    assert isinstance(before, AppMetricsBeforeMiddleware) and before._recorder is None
    assert isinstance(after, AppMetricsAfterMiddleware) and after._recorder is None


def test_custom_labels_under_asgi():
    d = Delta()

    async def scenario():
        c = AsyncClient(raise_request_exception=False)
        return [(await c.get(p)).status_code for p in ("/aok", "/aboom", "/template")]

    assert asyncio.run(scenario()) == [200, 500, 200]
    lat = "django_http_requests_latency_seconds_by_view_method_count"
    labels = {"method": "GET", "view_type": "custom", "user_agent_type": "other"}
    assert d(lat, view="aok", **labels) == 1
    assert d(lat, view="aboom", **labels) == 1
    assert (
        d("django_http_requests_before_middlewares_total", view_type="custom", user_agent_type="other") == 3
    )
    assert d("django_http_exceptions_total_by_view_total", view="aboom") == 1
    assert d("django_http_responses_total_by_templatename_total", templatename="hello.html") == 1
