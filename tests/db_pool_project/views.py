"""One view: a query holding a pooled connection for ``?s=`` seconds; answers with the worker's pid."""

import os

from django.db import connections
from django.http import HttpRequest, JsonResponse


def sleep(request: HttpRequest) -> JsonResponse:
    with connections[request.GET["db"]].cursor() as cursor:  # a pool timeout raises: a 500
        cursor.execute("SELECT pg_sleep(%s)", [float(request.GET.get("s", "0"))])
    return JsonResponse({"pid": os.getpid()})
