"""Views of the features project: plain, async, streaming, failing, excluded, DRF and django-ninja."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views import View

try:  # django-ninja needs pydantic-core, which has no free-threaded build here
    from ninja import NinjaAPI
except ImportError:
    NinjaAPI = None
from rest_framework import viewsets
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from django_prometheus.decorators import do_not_track


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok")


async def aok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"async ok")


def item(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(str(pk).encode())


def status(request: HttpRequest, code: int) -> HttpResponse:
    return HttpResponse(b"", status=code)


def boom(request: HttpRequest) -> HttpResponse:
    raise ValueError("the view failed")


def _chunks(count: int, pause: float):
    for _ in range(count):
        yield b"x" * 1024
        time.sleep(pause)


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """A long stream: ~10 s of 1 KiB chunks, for the client to abandon."""
    return StreamingHttpResponse(_chunks(1000, 0.01))


async def _achunks(count: int, pause: float):
    import asyncio

    for _ in range(count):
        yield b"x" * 1024
        await asyncio.sleep(pause)


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_achunks(1000, 0.01))


def short_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"a", b"bc"]))


def probe(request: HttpRequest) -> HttpResponse:
    """Reads the in-flight gauge while the request itself is in flight."""
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("django_http_requests_in_progress", {"method": request.method})
    return HttpResponse(str(value).encode())


@do_not_track
def untracked(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"untracked")


def by_name(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"excluded by name")


@do_not_track
class UntrackedView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(b"untracked class")


class ItemViewSet(viewsets.ViewSet):
    """A DRF viewset behind a router: ``list`` and ``retrieve`` are two routes."""

    authentication_classes: list = []
    permission_classes: list = []
    renderer_classes = [JSONRenderer]

    def list(self, request):
        return Response([1, 2])

    def retrieve(self, request, pk=None):
        return Response({"pk": pk})


api = None if NinjaAPI is None else NinjaAPI(urls_namespace="ninja")

if api is not None:

    @api.get("/things")
    def things(request):
        return [1, 2]

    @api.get("/things/{thing_id}")
    def thing(request, thing_id: int):
        return {"id": thing_id}

    @api.post("/things")
    def make_thing(request):
        return {"made": True}
