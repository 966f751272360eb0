"""Issue 27's small HTTP options: body-size buckets, ignored exceptions (both paths, both cores)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client
from prometheus_client import REGISTRY

from django_prometheus.http import options
from django_prometheus.middleware import Metrics, PrometheusAfterMiddleware
from tests.http_project.checks import MIDDLEWARE, TEMPLATES, Delta

pytestmark = [
    pytest.mark.urls("tests.http_project.urls"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:asgiref"),
]

REQ_BODY = "django_http_requests_body_total_bytes"
RESP_BODY = "django_http_responses_body_total_bytes"
BY_TYPE = "django_http_exceptions_total_by_type_total"
BY_VIEW = "django_http_exceptions_total_by_view_total"


class HookAfter(PrometheusAfterMiddleware):
    """Overrides ``label_metric``: the hook-by-hook (extension) path."""

    def label_metric(self, metric, request, response=None, **labels):
        return super().label_metric(metric, request, response, **labels)


HOOK_MIDDLEWARE = [MIDDLEWARE[0], f"{__name__}.HookAfter"]


@pytest.fixture(autouse=True)
def _project(settings):
    settings.MIDDLEWARE = MIDDLEWARE
    settings.TEMPLATES = TEMPLATES


def client() -> Client:
    return Client(raise_request_exception=False)


# -- PROMETHEUS_TOTAL_BYTES_BUCKETS -----------------------------------------------------------------


def test_body_buckets_default_to_upstreams_powers_of_two():
    client().get("/ok")
    metrics = Metrics.get_instance()
    expected = [0.0] + [float(2**i) for i in range(30)] + [float("inf")]
    assert list(metrics.requests_body_bytes._upper_bounds) == expected
    assert list(metrics.responses_body_bytes._upper_bounds) == expected


@pytest.mark.parametrize("hook", [False, True], ids=["core", "hooks"])
def test_body_buckets_setting_sets_both_histograms_and_goes_back(settings, hook):
    settings.MIDDLEWARE = HOOK_MIDDLEWARE if hook else MIDDLEWARE
    settings.PROMETHEUS_TOTAL_BYTES_BUCKETS = [100, 10_000, 1_000_000]
    client().post("/echo", b"x" * 500, content_type="text/plain")
    metrics = Metrics.get_instance()
    bounds = [100.0, 10_000.0, 1_000_000.0, float("inf")]
    assert list(metrics.requests_body_bytes._upper_bounds) == bounds
    assert list(metrics.responses_body_bytes._upper_bounds) == bounds
    # The 500-byte request and its echoed 500-byte response: above 100, within 10 000.
    assert REGISTRY.get_sample_value(REQ_BODY + "_bucket", {"le": "100.0"}) == 0
    assert REGISTRY.get_sample_value(REQ_BODY + "_bucket", {"le": "10000.0"}) == 1
    assert REGISTRY.get_sample_value(RESP_BODY + "_bucket", {"le": "10000.0"}) == 1
    assert REGISTRY.get_sample_value(RESP_BODY + "_bucket", {"le": "1.0"}) is None  # no such bound
    del settings.PROMETHEUS_TOTAL_BYTES_BUCKETS
    client().get("/ok")
    assert metrics.requests_body_bytes._upper_bounds[:3] == [0.0, 1.0, 2.0]
    assert len(metrics.responses_body_bytes._upper_bounds) == 32


@pytest.mark.parametrize(
    "value",
    [[], "1,2", [3, 2], [1, "2"], [1, float("nan")], [True, 2], None],
)
def test_bad_body_buckets_are_a_clear_error(settings, value):
    settings.PROMETHEUS_TOTAL_BYTES_BUCKETS = value
    with pytest.raises(ImproperlyConfigured, match="PROMETHEUS_TOTAL_BYTES_BUCKETS"):
        options.total_bytes_buckets()


# -- PROMETHEUS_IGNORED_EXCEPTIONS ------------------------------------------------------------------


def _boom_counts(d: Delta) -> tuple[float, float]:
    return d(BY_TYPE, type="Boom"), d(BY_VIEW, view="boom")


@pytest.mark.parametrize("hook", [False, True], ids=["core", "hooks"])
def test_exceptions_are_counted_by_default(settings, hook):
    settings.MIDDLEWARE = HOOK_MIDDLEWARE if hook else MIDDLEWARE
    d = Delta()
    assert client().get("/boom").status_code == 500
    assert _boom_counts(d) == (1, 1)


@pytest.mark.parametrize("hook", [False, True], ids=["core", "hooks"])
@pytest.mark.parametrize(
    "ignored",
    [
        ["tests.http_project.views.Boom"],
        ["builtins.Exception"],  # a base class: subclasses match
        ["django.http.Http404", "tests.http_project.views.Boom"],
    ],
)
def test_ignored_exceptions_and_their_subclasses_are_not_counted(settings, hook, ignored):
    settings.MIDDLEWARE = HOOK_MIDDLEWARE if hook else MIDDLEWARE
    settings.PROMETHEUS_IGNORED_EXCEPTIONS = ignored
    d = Delta()
    assert client().get("/boom").status_code == 500
    assert _boom_counts(d) == (0, 0)
    # The request itself is still recorded, as a 500.
    assert d("django_http_responses_total_by_status_total", status="500") == 1


@pytest.mark.parametrize("hook", [False, True], ids=["core", "hooks"])
def test_other_exceptions_are_still_counted(settings, hook):
    settings.MIDDLEWARE = HOOK_MIDDLEWARE if hook else MIDDLEWARE
    settings.PROMETHEUS_IGNORED_EXCEPTIONS = ["django.core.exceptions.PermissionDenied"]
    d = Delta()
    client().get("/boom")
    assert _boom_counts(d) == (1, 1)


def test_ignored_exceptions_under_asgi(settings):
    settings.PROMETHEUS_IGNORED_EXCEPTIONS = ["builtins.ValueError"]
    d = Delta()
    import asyncio

    response = asyncio.run(AsyncClient(raise_request_exception=False).get("/aboom"))
    assert response.status_code == 500
    assert d(BY_TYPE, type="ValueError") == 0
    assert d(BY_VIEW, view="aboom") == 0
    del settings.PROMETHEUS_IGNORED_EXCEPTIONS
    asyncio.run(AsyncClient(raise_request_exception=False).get("/aboom"))
    assert d(BY_TYPE, type="ValueError") == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["no.such.module.Error"], "cannot import 'no.such.module.Error'"),
        (["django.http.NoSuchThing"], "cannot import"),
        (["django.http.HttpResponse"], "is not an exception class"),
        ("django.http.Http404", "must be a list of strings"),
        ([""], "non-empty strings"),
    ],
)
def test_a_bad_ignored_exception_is_a_clear_error(settings, value, message):
    settings.PROMETHEUS_IGNORED_EXCEPTIONS = value
    with pytest.raises(ImproperlyConfigured, match="PROMETHEUS_IGNORED_EXCEPTIONS") as caught:
        options.ignored_exceptions()
    assert message in str(caught.value)
