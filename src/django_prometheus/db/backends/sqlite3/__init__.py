"""The instrumented sqlite3 backend: ``ENGINE = "django_prometheus.db.backends.sqlite3"``."""
