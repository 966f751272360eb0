"""Prometheus metrics for Django: middlewares, cache and database backends, model mixins."""

__version__ = "3.0.0a1"
