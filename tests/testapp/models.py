"""Models of the test app: some counted by ExportModelOperationsMixin, one with a column per common type."""

from django.db import models

from django_prometheus.models import ExportModelOperationsMixin


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
