"""Queries per request inside ``transaction.atomic()``: what ``assertNumQueries`` counts, everywhere.

Django logs the ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` it sends through the
driver's own calls (``debug_transaction``) next to the statements of its
cursors, so ``CaptureQueriesContext`` sees 5 queries for a block of three
statements. The rule (issue 22 item 6): a request's queries are exactly those,
on SQLite (whose ``BEGIN`` goes through a cursor), PostgreSQL (with and without
a pool) and MariaDB, on our ENGINE and with ``PROMETHEUS_INSTRUMENT_DATABASES``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connections
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from tests.test_db_instrument import switch
from tests.test_db_per_request import (
    ALIASES,
    PROJECT,
    Observed,
    _families_unregistered_afterwards,  # noqa: F401 - a fixture
    accounted,
)

# shape -> (the queries Django logs, what the view answers)
SHAPES = {
    "commit": (["BEGIN", "INSERT", "UPDATE", "SELECT", "COMMIT"], {"count": 1}),
    "nested": (["BEGIN", "INSERT", "SAVEPOINT", "UPDATE", "RELEASE", "SELECT", "COMMIT"], {"count": 1}),
    "rollback": (["BEGIN", "INSERT", "ROLLBACK", "SELECT"], {"exists": False}),
}


@pytest.fixture
def client(request: pytest.FixtureRequest, require_service: Any) -> Any:
    alias = request.node.callspec.params["alias"]
    service, noswap = ALIASES[alias]
    if service:
        require_service(service)
    if noswap:
        switch([alias])
    with override_settings(**PROJECT, PROMETHEUS_REQUEST_DB_METRICS=True):
        yield Client(raise_request_exception=True)
    if noswap:
        switch(False)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "alias",
    [pytest.param(a, marks=pytest.mark.django_db(databases=[a], transaction=True), id=a) for a in ALIASES],
)
def test_a_request_counts_the_queries_assert_num_queries_counts(alias: str, shape: str, client: Any) -> None:
    logged, answer = SHAPES[shape]
    seen = Observed("atomic/<str:shape>/")
    with CaptureQueriesContext(connections[alias]) as captured:
        response = client.get(f"/atomic/{shape}/", {"db": alias})
    assert json.loads(response.content) == answer
    assert [q["sql"].split()[0].strip('"') for q in captured.captured_queries] == logged
    assert accounted(response) == (len(logged), False)
    assert seen()["queries"] == len(logged)
