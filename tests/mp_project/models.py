from django.db import models

from django_prometheus.models import ExportModelOperationsMixin


class Item(ExportModelOperationsMixin("item"), models.Model):
    name = models.CharField(max_length=50)
