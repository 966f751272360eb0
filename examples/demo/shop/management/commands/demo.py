"""`python manage.py demo`: migrate, print where to look, serve on 127.0.0.1 (and drive traffic)."""

import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django_prometheus._core import _cells


class Command(BaseCommand):
    help = "Run the django-prometheus demo site on 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
        parser.add_argument(
            "--traffic",
            action="store_true",
            default=os.environ.get("DEMO_TRAFFIC", "") == "1",
            help="drive requests against the site itself (also DEMO_TRAFFIC=1)",
        )
        parser.add_argument("--rounds", type=int, default=int(os.environ.get("DEMO_TRAFFIC_ROUNDS", "600")))
        parser.add_argument("--pause", type=float, default=float(os.environ.get("DEMO_TRAFFIC_PAUSE", "1.0")))

    def handle(self, *args, port, traffic, rounds, pause, **options):
        self._check_backends()
        call_command("migrate", interactive=False, verbosity=0)
        # The migration gauges were computed when the app loaded, before this migrate.
        from django_prometheus.migrations import ExportMigrations

        ExportMigrations()
        base = f"http://127.0.0.1:{port}"
        core = "compiled" if _cells.USE_EXTENSIONS else "pure (DJANGO_PROMETHEUS_NO_EXTENSIONS)"
        cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
        lines = [
            "",
            "django-prometheus demo",
            f"  site:     {base}/",
            f"  metrics:  {base}/metrics   <- point Prometheus here (examples/prometheus/prometheus.yml)",
            f"  tour:     {base}/  (what each page exercises, which families to look at)",
            f"  pages:    {base}/items/ (cache + DB, forms), /orders/n-plus-one vs /orders/select-related,",
            "            /boom (500), /db-error",
            f"  core:     {core}",
            f"  database: {connection.vendor} ({settings.DATABASES['default']['ENGINE']})",
            f"  cache:    {cache}",
            (
                "  /metrics: protected (DEMO_METRICS_TOKEN): send Authorization: Bearer <token>"
                if getattr(settings, "PROMETHEUS_METRICS_BEARER_TOKENS", None)
                else "  /metrics: open (127.0.0.1 only; DEMO_METRICS_TOKEN=... protects it)"
            ),
            (
                f"  traffic:  driving {rounds} rounds, {pause}s apart"
                if traffic
                else "  traffic:  none (DEMO_TRAFFIC=1 make demo drives some)"
            ),
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
        if traffic:
            from shop import traffic as driver

            driver.start(base, rounds, pause)
        # No autoreloader: one process, so the traffic thread and the counters live in it.
        call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, skip_checks=True)

    def _check_backends(self):
        """A server that is not running stops the demo here, with what to run (not 500s later)."""
        from django.core.cache import cache

        try:
            connection.ensure_connection()
        except Exception as exc:
            raise CommandError(
                f"DEMO_DB={settings.DEMO_DB}: cannot connect to the database ({exc}). "
                "Start it with `scripts/services.sh start` (DP_PG_HOST/DP_PG_PORT say where)."
            ) from None
        if settings.DEMO_CACHE == "redis":
            try:
                cache._cache.get_client(write=False).ping()
            except Exception as exc:
                where = settings.CACHES["default"]["LOCATION"]
                raise CommandError(
                    f"DEMO_CACHE=redis: cannot reach Redis at {where} ({exc}). "
                    "Start it with `scripts/services.sh start`, or set DEMO_REDIS_URL."
                ) from None
