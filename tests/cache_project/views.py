"""Views that run a fixed set of cache operations on the alias in the URL, sync and async."""

import uuid

from django.core.cache import caches
from django.http import HttpResponse


def sync_ops(request, alias):
    cache = caches[alias]
    key = uuid.uuid4().hex  # one key per request: concurrent requests do not collide
    cache.set(key, 1)
    assert cache.get(key) == 1
    assert cache.get(key + "-absent") is None
    assert cache.get_many([key, key + "-absent"]) == {key: 1}
    assert cache.incr(key) == 2
    assert cache.has_key(key)
    cache.delete(key)
    return HttpResponse("ok")


async def async_ops(request, alias):
    cache = caches[alias]
    key = uuid.uuid4().hex
    await cache.aset(key, 1)
    assert await cache.aget(key) == 1
    assert await cache.aget(key + "-absent") is None
    assert await cache.aget_many([key, key + "-absent"]) == {key: 1}
    assert await cache.aincr(key) == 2
    assert await cache.ahas_key(key)
    await cache.adelete(key)
    return HttpResponse("ok")
