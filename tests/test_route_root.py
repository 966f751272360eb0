"""The root URL pattern is a route (``/``), not ``<unmatched>``, in the route and per-request DB families.

Django's ``resolver_match.route`` of ``path("", view)`` is the empty string,
also when the root sits in an ``include()`` mounted at ""; a ``re_path(r"^$")``
is its regex. Only a request the resolver did not match is ``<unmatched>``.
Both cores: the whole suite runs twice (``DJANGO_PROMETHEUS_NO_EXTENSIONS``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import include, path, re_path
from django_prometheus._core import _http

from django_prometheus.http import features, routes
from tests.db_request_project import views as db_views
from tests.http_project.checks import MIDDLEWARE, Delta
from tests.test_db_per_request import Observed, _families_unregistered_afterwards  # noqa: F401

ROUTE = "django_http_route_requests_total"
DURATION = "django_http_route_request_duration_seconds"


class RootPath:
    urlpatterns = [path("", db_views.seven), path("other/", db_views.none)]


class IncludedRoot:
    urlpatterns = [path("", include([path("", db_views.seven), path("other/", db_views.none)]))]


class RegexRoot:
    urlpatterns = [re_path(r"^$", db_views.seven), path("other/", db_views.none)]


URLCONFS = [
    pytest.param(RootPath, "/", id="path-root"),
    pytest.param(IncludedRoot, "/", id="included-root"),
    pytest.param(RegexRoot, "^$", id="re_path-root"),
]


@pytest.fixture
def features_on() -> Any:
    """Route metrics and per-request DB metrics on, through the real middlewares."""
    on = {"PROMETHEUS_ROUTE_METRICS": True, "PROMETHEUS_REQUEST_DB_METRICS": True}
    with override_settings(MIDDLEWARE=MIDDLEWARE, **on):
        features.install()
        yield
    features.install()  # settings restored: nothing installed
    assert _http.get_features() is None


def test_the_root_label_is_a_slash() -> None:
    assert routes.ROOT == "/"
    assert routes.ROOT != routes.UNMATCHED


@pytest.mark.django_db(databases=["sqlite"])
@pytest.mark.parametrize(("urlconf", "label"), URLCONFS)
def test_the_root_pattern_is_labelled_as_a_route(features_on: Any, urlconf: type, label: str) -> None:
    with override_settings(ROOT_URLCONF=urlconf):
        client = Client(raise_request_exception=False)
        d, root, unmatched = Delta(), Observed(label), Observed(routes.UNMATCHED)
        assert client.get("/", {"db": "sqlite"}).status_code == 200
        assert client.get("/nowhere/").status_code == 404
    assert d(ROUTE, route=label, method="GET", status="200") == 1
    assert d(DURATION + "_count", route=label, method="GET") == 1
    # the real 404 alone is <unmatched>
    assert d(ROUTE, route=routes.UNMATCHED, method="GET", status="200") == 0
    assert d(ROUTE, route=routes.UNMATCHED, method="GET", status="404") == 1
    assert root() == {"requests": 1, "queries": 7, "seconds_count": 1, "repeated": 0}
    assert unmatched() == {"requests": 1, "queries": 0, "seconds_count": 1, "repeated": 0}


@pytest.mark.parametrize(
    ("match", "label"),
    [("", "/"), ("^$", "^$"), ("shop/", "shop/"), (None, "<unmatched>"), (3, "<unmatched>")],
)
def test_the_core_rule_on_a_resolver_match(twin: Any, match: Any, label: str) -> None:
    core = twin.features

    class Match:
        route = match

    class Request:
        resolver_match = Match()

    assert core.route(Request()) == label
    assert core.route(object()) == "<unmatched>"
    assert core.ROOT == routes.ROOT
