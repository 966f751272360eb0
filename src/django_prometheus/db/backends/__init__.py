"""Instrumented database backends: set ``ENGINE`` to ``django_prometheus.db.backends.<name>``."""
