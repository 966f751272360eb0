"""ExportModelOperationsMixin: insert/update/delete counters per model, migrations-compatible class name."""

from __future__ import annotations

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
