"""Transactions on the ENGINE path: django_db_transactions_total{outcome} and durations, real databases."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections, transaction
from prometheus_client import REGISTRY

from tests.testapp.models import Dog

ALIASES = {"sqlite": None, "postgresql": "postgresql", "postgresql_pool": "postgresql", "mysql": "mysql"}


def each_alias(test: Any) -> Any:
    return pytest.mark.parametrize(
        "alias",
        [
            pytest.param(a, marks=pytest.mark.django_db(databases=[a], transaction=True), id=a)
            for a in ALIASES
        ],
    )(test)


@pytest.fixture(autouse=True)
def _servers(request: pytest.FixtureRequest, require_service: Any) -> None:
    service = (
        ALIASES.get(request.node.callspec.params.get("alias")) if hasattr(request.node, "callspec") else None
    )
    if service:
        require_service(service)


class Transactions:
    def __init__(self, alias: str) -> None:
        self.labels = {"alias": alias, "vendor": connections[alias].vendor}
        self.before = self.now()

    def now(self) -> dict[str, float]:
        get = REGISTRY.get_sample_value
        return {
            "commit": get("django_db_transactions_total", {**self.labels, "outcome": "commit"}) or 0.0,
            "rollback": get("django_db_transactions_total", {**self.labels, "outcome": "rollback"}) or 0.0,
            "duration_count": get("django_db_transaction_duration_seconds_count", self.labels) or 0.0,
        }

    def __call__(self) -> dict[str, float]:
        return {k: v - self.before[k] for k, v in self.now().items()}


@each_alias
def test_a_rolled_back_atomic_counts_one_rollback(alias: str) -> None:
    dogs = Dog.objects.using(alias)
    delta = Transactions(alias)
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=alias):
            dogs.create(name="gone")
            raise RuntimeError("roll back")
    assert not dogs.filter(name="gone").exists()
    assert delta() == {"commit": 0, "rollback": 1, "duration_count": 1}


@each_alias
def test_commits_rollbacks_and_savepoints(alias: str) -> None:
    dogs = Dog.objects.using(alias)
    delta = Transactions(alias)
    dogs.create(name="autocommit")  # no transaction of ours
    with transaction.atomic(using=alias):
        dogs.create(name="kept")
        with pytest.raises(RuntimeError), transaction.atomic(using=alias):  # a savepoint: not a transaction
            dogs.create(name="inner")
            raise RuntimeError
    with transaction.atomic(using=alias):
        dogs.create(name="dropped")
        transaction.set_rollback(True, using=alias)
    with transaction.atomic(using=alias, durable=True):
        dogs.create(name="durable")
    assert sorted(dogs.values_list("name", flat=True)) == ["autocommit", "durable", "kept"]
    assert delta() == {"commit": 2, "rollback": 1, "duration_count": 3}


@each_alias
def test_manual_transactions_count_each_commit(alias: str) -> None:
    dogs = Dog.objects.using(alias)
    delta = Transactions(alias)
    transaction.set_autocommit(False, using=alias)
    try:
        dogs.create(name="one")
        transaction.commit(using=alias)
        dogs.create(name="two")
        transaction.rollback(using=alias)
    finally:
        transaction.set_autocommit(True, using=alias)
    assert list(dogs.values_list("name", flat=True)) == ["one"]
    assert delta() == {"commit": 1, "rollback": 1, "duration_count": 2}


@each_alias
def test_a_transactions_duration_covers_the_block(alias: str) -> None:
    delta = Transactions(alias)
    labels = delta.labels
    before = REGISTRY.get_sample_value("django_db_transaction_duration_seconds_sum", labels) or 0.0
    import time

    started = time.perf_counter()
    with transaction.atomic(using=alias):
        Dog.objects.using(alias).create(name="slow")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    spent = REGISTRY.get_sample_value("django_db_transaction_duration_seconds_sum", labels) - before
    assert 0.05 <= spent <= elapsed + 1e-9
    assert delta()["commit"] == 1
