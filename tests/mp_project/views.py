"""Views with known costs: each one's cache gets, queries and model writes are fixed."""

import asyncio
import multiprocessing
import os
import subprocess

import prometheus_client
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, HttpResponseNotFound

from django_prometheus import metrics, multiprocess, text_format
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


# --- For the scrape tests (test_multiprocess_scrape_servers.py) ---

ECHO = metrics.Counter("mp_echo", "Label values straight from the client (the user's choice).", ["v"])


def echo(request):
    """A client-chosen label value on one of our metric classes: NUL and CR included."""
    ECHO.labels(request.GET.get("v", "")).inc()
    return HttpResponse(b"ok")


def spawn(request):
    """Forks that never count: their pids, which must own no metrics file."""
    pids = []
    for _ in range(5):
        subprocess.run(["true"], preexec_fn=lambda: None, check=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    pids.append(pid)
    pool = multiprocessing.get_context("fork").Pool(2)
    pids.extend(set(pool.map(_pid, range(4))))
    pool.close()  # (not terminate(): its SIGTERM meets the gunicorn worker's inherited handler)
    pool.join()
    return HttpResponse(" ".join(map(str, pids)).encode())


def _pid(_):
    return os.getpid()


def scrape(request):
    """The exporters' seam, as the view and the port exporters call it."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = multiprocess.aggregate_registry(path) if path else prometheus_client.REGISTRY
    body = text_format.render(registry, False, request.GET.getlist("name[]") or None)
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")


# --- For the full-disk and live-gauge tests (test_multiprocess_full_disk.py, _live_gauges.py) ---


def pid(request):
    """The worker's pid: which process served (and counted) this request."""
    return HttpResponse(str(os.getpid()).encode())


async def slow(request):
    """In flight for ``s`` seconds (the test kills the worker long before); async: many at once."""
    await asyncio.sleep(min(float(request.GET.get("s", "1")), 120.0))
    return HttpResponse(b"late")
