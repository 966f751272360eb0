"""Views with known costs: each one's cache gets, queries and model writes are fixed."""

import prometheus_client
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, HttpResponseNotFound

from tests.mp_project.models import Item

# A user's own prometheus_client metric, next to ours.
USER_HITS = prometheus_client.Counter("mp_user_hits", "Requests the user's own code counted.", ["view"])


def ok(request):
    """Two cache gets (one hit, one miss) and one query."""
    cache.set("present", b"1")  # (sets are not counted)
    assert cache.get("present") == b"1"
    assert cache.get("absent") is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    USER_HITS.labels("ok").inc()
    return HttpResponse(b"ok")


def create(request):
    """One model insert (one query)."""
    Item.objects.create(name="x")
    USER_HITS.labels("create").inc()
    return HttpResponse(b"created", status=201)


def missing(request):
    return HttpResponseNotFound(b"no")


def boom(request):
    raise ValueError("boom")
