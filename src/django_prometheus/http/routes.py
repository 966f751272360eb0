"""The ``route`` label of the route metrics and the per-request DB metrics."""

from __future__ import annotations

from typing import Any

from django_prometheus._core import _features

__all__ = ["ROOT", "UNMATCHED", "route"]

#: The ``route`` of a request no URL pattern matched (a 404 from the resolver).
UNMATCHED: str = _features.UNMATCHED
#: The ``route`` of the empty pattern, ``path("", ...)`` (also at the root of an ``include()``).
ROOT: str = _features.ROOT


def route(request: Any) -> str:
    """The URL pattern that matched the request (``request.resolver_match.route``), else ``<unmatched>``.

    Django joins the patterns of ``include()`` into ``route`` as it resolves
    (``api/`` + ``items/<int:pk>/`` -> ``api/items/<int:pk>/``; namespaces name
    URLs, they are not part of a pattern); a ``re_path`` pattern is its regex
    (DRF's routers); the empty pattern, a site's home page, is ``/``. Bounded
    by the URLconf: never the raw path.
    """
    return _features.route(request)
