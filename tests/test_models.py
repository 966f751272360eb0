"""ExportModelOperationsMixin: insert/update/delete counters per model, migrations-compatible class name."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import models
from django.test.utils import isolate_apps
from prometheus_client import REGISTRY

from django_prometheus.models import ExportModelOperationsMixin, model_deletes, model_inserts, model_updates
from tests.testapp.models import Dog, Lawn


def count(kind: str, model: str) -> float:
    return REGISTRY.get_sample_value(f"django_model_{kind}_total", {"model": model}) or 0.0


def counts(model: str) -> dict[str, float]:
    return {kind: count(kind, model) for kind in ("inserts", "updates", "deletes")}


def test_mixin_qualname_is_what_existing_migrations_reference() -> None:
    mixin = ExportModelOperationsMixin("cat")
    assert mixin.__qualname__ == "ExportModelOperationsMixin('cat')"
    assert mixin.__module__ == "django_prometheus.models"
    assert Dog.__mro__[1].__qualname__ == "ExportModelOperationsMixin('dog')"


def test_metric_objects_are_the_exposed_families() -> None:
    assert (model_inserts._name, model_updates._name, model_deletes._name) == (
        "django_model_inserts",
        "django_model_updates",
        "django_model_deletes",
    )
    assert model_inserts._labelnames == ("model",)


@pytest.mark.django_db
def test_insert_update_delete_are_counted_per_model() -> None:
    dog_before, lawn_before = counts("dog"), counts("lawn")
    dog = Dog.objects.create(name="rex")
    dog.age = 3
    dog.save()
    dog.save(update_fields=["age"])
    Lawn.objects.create(location="front")
    dog.delete()
    dog_after, lawn_after = counts("dog"), counts("lawn")
    assert {k: dog_after[k] - dog_before[k] for k in dog_after} == {"inserts": 1, "updates": 2, "deletes": 1}
    assert {k: lawn_after[k] - lawn_before[k] for k in lawn_after} == {
        "inserts": 1,
        "updates": 0,
        "deletes": 0,
    }


@pytest.mark.django_db
def test_instrumented_models_behave_as_plain_ones() -> None:
    dog = Dog.objects.create(name="fido", breed="collie")
    assert Dog.objects.get(pk=dog.pk).breed == "collie"
    deleted = dog.delete()
    assert deleted == (1, {"testapp.Dog": 1})
    assert not Dog.objects.exists()


@pytest.mark.django_db
def test_the_test_app_migrations_match_the_models_with_the_mixin() -> None:
    # makemigrations --check exits non-zero when the models need a new migration.
    call_command("makemigrations", "testapp", check=True, dry_run=True, verbosity=0)


def test_a_migration_base_written_by_makemigrations_resolves_to_the_mixin() -> None:
    from django.db.migrations.writer import MigrationWriter

    mixin = ExportModelOperationsMixin("dog")
    code, imports = MigrationWriter.serialize(mixin)
    assert code == "django_prometheus.models.ExportModelOperationsMixin('dog')"
    assert imports == {"import django_prometheus.models"}
    import django_prometheus.models  # noqa: F401  (what the migration file imports)

    rebuilt = eval(code)  # what loading the migration file does
    assert rebuilt.__qualname__ == mixin.__qualname__


@isolate_apps("tests.testapp")
def test_mixin_adds_no_field() -> None:
    class Cat(ExportModelOperationsMixin("cat"), models.Model):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testapp"

    assert [f.name for f in Cat._meta.get_fields()] == ["id", "name"]


def rows(model: str, operation: str) -> float:
    return (
        REGISTRY.get_sample_value("django_model_rows_total", {"model": model, "operation": operation}) or 0.0
    )


ROW_KEYS = [(m, op) for m in ("testapp.Owner", "testapp.Pet", "testapp.Toy")
            for op in ("bulk_create", "bulk_update", "update", "delete")]  # fmt: skip


class RowsDelta:
    def __init__(self) -> None:
        self.before = {k: rows(*k) for k in ROW_KEYS}

    def __call__(self) -> dict[tuple[str, str], float]:
        return {k: rows(*k) - self.before[k] for k in ROW_KEYS if rows(*k) != self.before[k]}


ROW_ALIASES = {"default": None, "postgresql": "postgresql", "postgresql_pool": "postgresql", "mysql": "mysql"}


@pytest.mark.parametrize(
    "alias", [pytest.param(a, marks=pytest.mark.django_db(databases=[a]), id=a) for a in ROW_ALIASES]
)
def test_bulk_and_queryset_writes_count_rows_per_model(alias: str, require_service: Any) -> None:
    from tests.testapp.models import Owner, Pet, Toy

    if ROW_ALIASES[alias]:
        require_service(ROW_ALIASES[alias])
    ops = RowsDelta()
    operations = counts("pet")
    owners = Owner.objects.using(alias).bulk_create([Owner(name=f"o{i}") for i in range(3)])
    if owners[0].pk is None:  # MySQL returns no primary keys from bulk_create
        owners = list(Owner.objects.using(alias).order_by("name"))
    pets = Pet.objects.using(alias).bulk_create(
        [Pet(owner=o, name=f"{o.name}-p{j}") for o in owners for j in range(2)]
    )
    pets = list(Pet.objects.using(alias).order_by("name"))
    Toy.objects.using(alias).bulk_create(
        [Toy(pet=p) for p in pets for _ in range(2)]
    )  # not counted: plain manager
    for p in pets[:4]:
        p.name += "!"
    assert Pet.objects.using(alias).bulk_update(pets[:4], ["name"]) == 4
    assert Owner.objects.using(alias).filter(name__in=["o0", "o1"]).update(name="x") == 2
    assert Owner.objects.using(alias).filter(name="nobody").update(name="y") == 0
    deleted = Owner.objects.using(alias).filter(name="x").delete()
    # o0, o1 -> their 4 pets -> those pets' 8 toys: Django's own account, cascade included.
    assert deleted == (14, {"testapp.Toy": 8, "testapp.Pet": 4, "testapp.Owner": 2})
    Pet.objects.using(alias).all().delete()
    assert ops() == {
        ("testapp.Owner", "bulk_create"): 3,
        ("testapp.Owner", "update"): 2,
        ("testapp.Owner", "delete"): 2,
        ("testapp.Pet", "bulk_create"): 6,
        ("testapp.Pet", "bulk_update"): 4,
        ("testapp.Pet", "delete"): 6,
        ("testapp.Toy", "delete"): 12,
    }
    # What ExportModelOperationsMixin counts is unchanged: bulk and queryset writes were never its business.
    assert counts("pet") == operations


@pytest.mark.django_db
def test_row_counting_keeps_djangos_async_twins_and_manager_surface() -> None:
    from asgiref.sync import async_to_sync

    from django_prometheus.models import ExportModelRowsQuerySet
    from tests.testapp.models import Owner

    assert isinstance(Owner.objects.all(), ExportModelRowsQuerySet)
    assert not hasattr(Owner.objects, "delete")  # queryset-only, as Django's
    ops = RowsDelta()

    async def work() -> None:
        await Owner.objects.abulk_create([Owner(name="a"), Owner(name="b")])
        await Owner.objects.filter(name="a").aupdate(name="c")
        await Owner.objects.filter(name="b").adelete()

    async_to_sync(work)()
    assert ops() == {
        ("testapp.Owner", "bulk_create"): 2,
        ("testapp.Owner", "update"): 1,
        ("testapp.Owner", "delete"): 1,
    }


def test_the_rows_family_is_not_declared_until_used() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import django; from django.conf import settings;"
        "settings.configure(INSTALLED_APPS=['django_prometheus']);"
        "django.setup(); from prometheus_client import generate_latest; print(generate_latest().decode())"
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "django_model_inserts_total" in proc.stdout
    assert "django_model_rows" not in proc.stdout
