from django.db import models

from django_prometheus.models import ExportModelOperationsMixin


# Every save()/delete() of an Item counts in django_model_{inserts,updates,deletes}_total{model="item"}.
class Item(ExportModelOperationsMixin("item"), models.Model):
    name = models.CharField(max_length=100)
    hits = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name
