"""The Django app: ``INSTALLED_APPS = [..., "django_prometheus"]``."""

from django.apps import AppConfig
from django.conf import settings

# Imported here, as upstream does, so the migration gauges exist once the app loads.
from django_prometheus.migrations import ExportMigrations


class DjangoPrometheusConfig(AppConfig):
    name = "django_prometheus"
    verbose_name = "Django-Prometheus"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django_prometheus.exports import SetupPrometheusExportsFromConfig

        SetupPrometheusExportsFromConfig()

        if getattr(settings, "PROMETHEUS_INSTRUMENT_DATABASES", False):  # db helper: no-swap DB metrics
            from django_prometheus.db.instrument import instrument_databases

            instrument_databases()

        if getattr(settings, "PROMETHEUS_EXPORT_MIGRATIONS", False):
            ExportMigrations()
