"""The Django app: ``INSTALLED_APPS = [..., "django_prometheus"]``."""

from django.apps import AppConfig


class DjangoPrometheusConfig(AppConfig):
    name = "django_prometheus"
    verbose_name = "Django-Prometheus"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        # Metric families are created on import of their modules; nothing to start yet.
        pass
