"""The instrumented postgresql backend: ``ENGINE = "django_prometheus.db.backends.postgresql"``."""
