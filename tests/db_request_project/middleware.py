"""A test-only middleware calling ``db.per_request`` as the outer middleware does (until it is merged).

It also returns what was accounted in ``X-DB-Queries`` / ``X-DB-Repeated``, so
a test sees every single request's counts, not only the families' sums.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from django_prometheus.db import per_request


def route(request: Any) -> str:
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None else "<unmatched>"


#: The token of the last request that ended (tests look at it afterwards).
last: list[Any] = [None]


def _tell(response: Any, token: Any) -> Any:
    last[0] = token
    if token is not None:
        response["X-DB-Queries"] = str(token.queries)
        response["X-DB-Repeated"] = str(token.repeated)
    return response


class AccountDBQueries:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        token = per_request.begin() if per_request.enabled() else None
        response = None
        try:
            response = self.get_response(request)
        finally:
            per_request.end(token, route(request))
        return _tell(response, token)

    async def __acall__(self, request: Any) -> Any:
        token = per_request.begin() if per_request.enabled() else None
        try:
            response = await self.get_response(request)
        finally:
            per_request.end(token, route(request))
        return _tell(response, token)
