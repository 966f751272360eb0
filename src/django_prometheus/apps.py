"""The Django app: ``INSTALLED_APPS = [..., "django_prometheus"]``."""

from django.apps import AppConfig


class DjangoPrometheusConfig(AppConfig):
    name = "django_prometheus"
    verbose_name = "Django-Prometheus"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django_prometheus.exports import SetupPrometheusExportsFromConfig

        SetupPrometheusExportsFromConfig()
