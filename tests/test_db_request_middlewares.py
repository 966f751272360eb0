"""PROMETHEUS_REQUEST_DB_METRICS end to end: the real middlewares account each request's queries by route.

``tests/test_db_per_request.py`` pins the accounting itself (every database,
both DB paths, uvicorn); here the same scripted views run behind
``PrometheusBeforeMiddleware``/``PrometheusAfterMiddleware``, which begin and
end the accounting through the opt-in features' seam, label it with the route
rule, and drop it for an excluded view (ASGI and async views: the uvicorn test there).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings
from django_prometheus._core import _http

from django_prometheus.http import features
from tests.http_project.checks import MIDDLEWARE
from tests.test_db_instrument import switch
from tests.test_db_per_request import ALIASES, Observed, _families_unregistered_afterwards, _ten_pets  # noqa: F401

PROJECT = {"ROOT_URLCONF": "tests.db_request_project.urls", "MIDDLEWARE": MIDDLEWARE}
# One database per DB path: our ENGINE, and a stock ENGINE instrumented without the swap.
CASES = [
    pytest.param(alias, marks=pytest.mark.django_db(databases=[alias]), id=alias)
    for alias in ("sqlite", "postgresql_pool", "mysql_bare")
]


@pytest.fixture
def project(request: pytest.FixtureRequest, require_service: Any) -> Any:
    alias = request.node.callspec.params.get("alias", "sqlite")
    service, noswap = ALIASES[alias]
    if service:
        require_service(service)
    if noswap:
        switch([alias])
    try:
        with override_settings(**PROJECT, PROMETHEUS_REQUEST_DB_METRICS=True):
            features.install()
            assert _http.get_features() is not None
            yield alias
    finally:
        if noswap:
            switch(False)
        features.install()
    assert _http.get_features() is None  # off again once the setting is restored


@pytest.mark.parametrize("alias", CASES)
def test_seven_queries_and_an_n_plus_one_by_route(alias: str, project: str) -> None:
    client = Client(raise_request_exception=False)
    seven = Observed("seven/")
    response = client.get("/seven/", {"db": alias})
    assert json.loads(response.content)["out"][-1] == 7
    assert seven() == {"requests": 1, "queries": 7, "seconds_count": 1, "repeated": 0}
    _ten_pets(alias)
    loop, joined = Observed("n-plus-one/"), Observed("select-related/")
    client.get("/n-plus-one/", {"db": alias})
    client.get("/select-related/", {"db": alias})
    assert loop() == {"requests": 1, "queries": 11, "seconds_count": 1, "repeated": 1}
    assert joined() == {"requests": 1, "queries": 1, "seconds_count": 1, "repeated": 0}


@pytest.mark.parametrize("alias", CASES[:1])
def test_unmatched_failing_and_excluded_requests(alias: str, project: str) -> None:
    client = Client(raise_request_exception=False)
    unmatched, broken = Observed("<unmatched>"), Observed("broken/")
    assert client.get("/nowhere/").status_code == 404
    assert client.get("/broken/", {"db": alias}).status_code == 500
    assert unmatched() == {"requests": 1, "queries": 0, "seconds_count": 1, "repeated": 0}
    assert broken() == {"requests": 1, "queries": 1, "seconds_count": 1, "repeated": 0}
    with override_settings(PROMETHEUS_EXCLUDE_VIEWS=["tests.db_request_project.views.seven"]):
        features.install()
        seven = Observed("seven/")
        assert client.get("/seven/", {"db": alias}).status_code == 200
        assert seven() == {"requests": 0, "queries": 0, "seconds_count": 0, "repeated": 0}
