"""`python manage.py demo`: migrate, print where to look, serve on 127.0.0.1 (and drive traffic)."""

import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
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
            f"  pages:    {base}/items/ (cache + DB), POST /items/new (model insert), /boom (500), /db-error",
            f"  core:     {core}",
            f"  database: {connection.vendor} ({settings.DATABASES['default']['ENGINE']})",
            f"  cache:    {cache}",
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
