from django.db import models

from django_prometheus.models import ExportModelOperationsMixin


# Every save()/delete() of an Item counts in django_model_{inserts,updates,deletes}_total{model="item"}.
class Item(ExportModelOperationsMixin("item"), models.Model):
    name = models.CharField(max_length=100)
    hits = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name


# For the N+1 page and its select_related twin (seeded by migration 0002, not counted as writes).
class Customer(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    total = models.DecimalField(max_digits=8, decimal_places=2)
