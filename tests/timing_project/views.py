"""Views whose Server-Timing entries are known: three queries and two cache operations, and variants."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.db import connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

PAGE = "<!doctype html><html><head><title>timing</title></head><body>timed</body></html>"


def _work() -> None:
    # The aliases are settings so the in-process tests can point them at the suite's own.
    with connections[getattr(settings, "TIMING_DB_ALIAS", "default")].cursor() as cursor:
        for n in range(3):
            cursor.execute("SELECT %s", [n])
    cache = caches[getattr(settings, "TIMING_CACHE_ALIAS", "default")]
    cache.set("timing-key", 1)
    cache.get("timing-key")


def page(request: HttpRequest) -> HttpResponse:
    _work()
    return HttpResponse(PAGE)


async def apage(request: HttpRequest) -> HttpResponse:
    await sync_to_async(_work)()
    return HttpResponse(PAGE)


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"plain")


def own(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(PAGE)
    response["Server-Timing"] = 'view;dur=1.5;desc="own"'
    return response


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"a", b"b"]))
