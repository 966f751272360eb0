"""The instrumented mysql backend: ``ENGINE = "django_prometheus.db.backends.mysql"``."""
