"""The instrumented spatialite backend: ``ENGINE = "django_prometheus.db.backends.spatialite"``."""
