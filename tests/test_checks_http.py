"""``manage.py check`` for the HTTP side (issue 27 item 5): the middlewares' places, /metrics routed once."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import include, path

from django_prometheus import checks_http
from django_prometheus.exports import ExportToDjangoView
from django_prometheus.middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware

BEFORE = "django_prometheus.middleware.PrometheusBeforeMiddleware"
AFTER = "django_prometheus.middleware.PrometheusAfterMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"


class MyBefore(PrometheusBeforeMiddleware):
    pass


class MyAfter(PrometheusAfterMiddleware):
    pass


# URLconfs for the W204 tests (ROOT_URLCONF points at these through the modules below).
urlpatterns = [
    path("", include("django_prometheus.urls")),
    path("ops/", include("django_prometheus.urls")),
]
once = [path("", include("django_prometheus.urls")), path("x", lambda r: None)]
by_view = [path("", include("django_prometheus.urls")), path("m2", ExportToDjangoView)]


def ids(messages) -> list[str]:
    return [m.id for m in messages]


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ([BEFORE, COMMON, AFTER], []),
        ([], []),  # not using the HTTP metrics
        ([COMMON], []),
        ([f"{__name__}.MyBefore", COMMON, f"{__name__}.MyAfter"], []),  # subclasses count
        ([BEFORE, COMMON], ["django_prometheus.W201"]),
        ([COMMON, AFTER], ["django_prometheus.W201"]),
        ([AFTER, COMMON, BEFORE], ["django_prometheus.W202", "django_prometheus.W203"]),
        ([AFTER, BEFORE], ["django_prometheus.W202", "django_prometheus.W203"]),
        ([BEFORE, AFTER, SESSIONS], ["django_prometheus.W203"]),
        ([COMMON, AFTER, SESSIONS], ["django_prometheus.W201", "django_prometheus.W203"]),
        (
            [f"{__name__}.MyAfter", f"{__name__}.MyBefore"],
            ["django_prometheus.W202", "django_prometheus.W203"],
        ),
        (["no.such.Middleware", BEFORE, AFTER], []),  # Django itself reports what does not import
    ],
)
def test_middleware_places(settings, middleware, expected):
    settings.MIDDLEWARE = middleware
    assert ids(checks_http.check_middleware()) == expected


def test_messages_say_the_fix(settings):
    settings.MIDDLEWARE = [BEFORE, COMMON]
    (only,) = checks_http.check_middleware()
    assert "Only PrometheusBeforeMiddleware" in only.msg
    assert only.hint == f"Add {AFTER!r} to MIDDLEWARE, last."
    settings.MIDDLEWARE = [AFTER, BEFORE, SESSIONS]
    order, last = checks_http.check_middleware()
    assert order.hint == f"Put {BEFORE!r} first in MIDDLEWARE and {AFTER!r} last."
    assert repr(SESSIONS) in last.msg and last.hint == f"Move {AFTER!r} to the end of MIDDLEWARE."


@pytest.mark.parametrize(
    ("urlconf", "expected"),
    [
        (f"{__name__}", ["/", "/ops/"]),
        ("tests.test_checks_http_urls_once", None),
        ("tests.test_checks_http_urls_by_view", ["/", "/m2"]),
        ("tests.http_project.urls", None),
    ],
)
def test_metrics_routed_twice(settings, urlconf, expected):
    settings.ROOT_URLCONF = urlconf
    found = checks_http.check_metrics_urls()
    if expected is None:
        assert found == []
    else:
        (warning,) = found
        assert warning.id == "django_prometheus.W204"
        assert "2 times" in warning.msg
        for route in expected:
            assert repr(route + "metrics" if route.endswith("/") else route) in warning.msg
        assert "include('django_prometheus.urls')" in warning.hint


def test_manage_py_check_reports_them(settings):
    settings.MIDDLEWARE = [AFTER, BEFORE]
    settings.ROOT_URLCONF = __name__
    settings.PROMETHEUS_DISABLED_METRICS = ["django_http_no_such_family"]
    with pytest.raises(SystemCheckError) as caught:
        call_command("check", "--fail-level", "WARNING", "--tag", "django_prometheus")
    text = str(caught.value)
    for code in ("W202", "W203", "W204", "W205"):
        assert f"django_prometheus.{code}" in text


def test_bad_options_are_check_errors(settings):
    settings.PROMETHEUS_IGNORED_EXCEPTIONS = ["no.such.Error"]
    settings.PROMETHEUS_TOTAL_BYTES_BUCKETS = [5, 1]
    found = checks_http.check_options()
    assert ids(found) == ["django_prometheus.E201", "django_prometheus.E201"]
    assert "PROMETHEUS_TOTAL_BYTES_BUCKETS" in found[0].msg
    assert "cannot import 'no.such.Error'" in found[1].msg


@pytest.mark.parametrize("value", ["127.0.0.1", ["not-an-address"], [3]])
def test_server_timing_allowed_ips_is_read_once(settings, value):
    # One reading (the header's own, through the /metrics allow-list's parser): one error naming it.
    settings.PROMETHEUS_SERVER_TIMING_ALLOWED_IPS = value
    found = [m for m in checks_http.check_options() if "PROMETHEUS_SERVER_TIMING_ALLOWED_IPS" in m.msg]
    assert ids(found) == ["django_prometheus.E201"]
