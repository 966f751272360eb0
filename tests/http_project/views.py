"""Views that exercise every HTTP metric: plain, async, failing, streaming, templated."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok")


async def aok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"async ok")


def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body)


def slug(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(slug.encode())


class Boom(Exception):
    pass


def boom(request: HttpRequest) -> HttpResponse:
    raise Boom("the view failed")


async def aboom(request: HttpRequest) -> HttpResponse:
    raise ValueError("the async view failed")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"a", b"bc"]))


def latin(request: HttpRequest) -> HttpResponse:
    return HttpResponse("café".encode("latin-1"), content_type='text/plain; charset="iso-8859-1"')


def template(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "hello.html", {"name": "world"})


def unnamed(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"no name")
