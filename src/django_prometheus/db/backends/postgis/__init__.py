"""The instrumented postgis backend: ``ENGINE = "django_prometheus.db.backends.postgis"``."""
