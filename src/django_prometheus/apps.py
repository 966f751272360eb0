"""The Django app: ``INSTALLED_APPS = [..., "django_prometheus"]``."""

import logging
from collections.abc import Callable
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from django_prometheus import conf

# Imported here, as upstream does, so the migration gauges exist once the app loads.
from django_prometheus.migrations import ExportMigrations, export_later  # noqa: F401

logger = logging.getLogger(__name__)


def _install_background() -> None:
    """Hook up each kind of background work whose setting is on; nothing else (all off by default)."""
    from django_prometheus import celery_metrics, command_metrics, task_metrics

    if task_metrics.enabled():
        task_metrics.install()
    if celery_metrics.enabled():
        celery_metrics.install()
    command_metrics.install()  # itself a no-op unless PROMETHEUS_COMMAND_METRICS chooses commands


class DjangoPrometheusConfig(AppConfig):
    name = "django_prometheus"
    verbose_name = "Django-Prometheus"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        """Connect the signals and start what the settings ask for; runs again (idempotently) in tests.

        Never raises for a bad setting: that step is skipped, ``manage.py check``
        reports the setting (``django_prometheus.checks``), and the middlewares
        refuse to start with the same message.
        """
        from django_prometheus import checks as our_checks
        from django_prometheus.db import per_request
        from django_prometheus.exports import SetupPrometheusExportsFromConfig
        from django_prometheus.http import cells, features

        checks.register(our_checks.check_settings)
        checks.register(our_checks.check_distributions)
        import django_prometheus.checks_http  # noqa: F401  (middleware order, /metrics routed twice, ...)

        cells.connect_signals()
        features.connect_signals()
        per_request.connect_signals()

        self._step(features.install)  # the opt-in HTTP features, if any is on
        self._step(SetupPrometheusExportsFromConfig)
        self._step(_install_background)
        # DB metrics without an ENGINE swap
        if self._step(lambda: conf.get("PROMETHEUS_INSTRUMENT_DATABASES")):
            from django_prometheus.db.instrument import instrument_databases

            self._step(instrument_databases)
        if conf.get("PROMETHEUS_EXPORT_MIGRATIONS"):
            # Not read here: Django warns about queries while apps initialise.
            export_later(self)

    @staticmethod
    def _step(step: Callable[[], Any]) -> Any:
        try:
            return step()
        except ImproperlyConfigured as exc:
            logger.debug("django_prometheus: skipped at start-up, reported by manage.py check: %s", exc)
            return None
