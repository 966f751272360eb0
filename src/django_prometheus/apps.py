"""The Django app: ``INSTALLED_APPS = [..., "django_prometheus"]``."""

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

# Imported here, as upstream does, so the migration gauges exist once the app loads.
from django_prometheus.migrations import ExportMigrations, export_later  # noqa: F401


class DjangoPrometheusConfig(AppConfig):
    name = "django_prometheus"
    verbose_name = "Django-Prometheus"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django_prometheus.exports import SetupPrometheusExportsFromConfig

        checks.register(check_access_settings)
        import django_prometheus.checks_http  # noqa: F401  (registers issue 27's checks)
        from django_prometheus.http import extras  # the opt-in HTTP features, if any is on

        checks.register(extras.check_settings)
        extras.install()

        SetupPrometheusExportsFromConfig()

        if getattr(settings, "PROMETHEUS_INSTRUMENT_DATABASES", False):  # DB metrics without an ENGINE swap
            from django_prometheus.db.instrument import instrument_databases

            instrument_databases()

        if getattr(settings, "PROMETHEUS_EXPORT_MIGRATIONS", False):
            # Not read here: Django warns about queries while apps initialise.
            export_later(self)


def check_access_settings(**kwargs: object) -> list[checks.CheckMessage]:
    """``manage.py check`` reports access settings that /metrics could not enforce (it answers 500)."""
    from django_prometheus import access

    try:
        access.rules()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="django_prometheus.E001")]
    return []
