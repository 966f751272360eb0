"""Models of the test app: some counted by ExportModelOperationsMixin, one with a column per common type."""

from django.db import models

from django_prometheus.models import ExportModelOperationsMixin, ExportModelRowsQuerySet


class Dog(ExportModelOperationsMixin("dog"), models.Model):
    name = models.CharField(max_length=100, unique=True)
    breed = models.CharField(max_length=100, blank=True, null=True)
    age = models.PositiveIntegerField(blank=True, null=True)


class Lawn(ExportModelOperationsMixin("lawn"), models.Model):
    location = models.CharField(max_length=100)


class Row(models.Model):
    """One column per common type, to compare what our backends and Django's return."""

    i = models.IntegerField()
    big = models.BigIntegerField(null=True)
    f = models.FloatField(null=True)
    amount = models.DecimalField(max_digits=12, decimal_places=3, null=True)
    s = models.CharField(max_length=50, blank=True)
    txt = models.TextField(blank=True)
    flag = models.BooleanField(null=True)
    moment = models.DateTimeField(null=True)
    day = models.DateField(null=True)
    uid = models.UUIDField(null=True)
    blob = models.BinaryField(null=True)


class Owner(models.Model):
    """Bulk and queryset writes counted per model (``django_model_rows_total``); cascades to Pet, Toy."""

    name = models.CharField(max_length=100)
    objects = ExportModelRowsQuerySet.as_manager()


class Pet(ExportModelOperationsMixin("pet"), models.Model):
    owner = models.ForeignKey(Owner, on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    objects = ExportModelRowsQuerySet.as_manager()


class Toy(models.Model):
    """No counting queryset of its own: its rows are counted when a cascade deletes them."""

    pet = models.ForeignKey(Pet, on_delete=models.CASCADE)
