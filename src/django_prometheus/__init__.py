"""Prometheus metrics for Django: middlewares, cache and database backends, model mixins."""

__version__ = "3.0.0a1"

from django.conf import settings as _settings

# As upstream, importing the package imports the middleware module. Guarded so that
# importing it before settings are configured (tools, docs builds) still works.
if _settings.configured:
    from django_prometheus import (
        middleware,  # noqa: F401
        models,  # noqa: F401
    )
