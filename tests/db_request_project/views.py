"""Views running scripted queries on the database alias named in ``?db=``."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.http import HttpRequest, JsonResponse

from tests.testapp.models import Dog, Owner, Pet


def _alias(request: HttpRequest) -> str:
    return request.GET.get("db", "default")


def seven_queries(alias: str, name: str = "a") -> list:
    """Exactly 7 queries, all different statements (also a 'view' of tests/test_db_instrument.py)."""
    dogs = Dog.objects.using(alias)
    out: list = [dogs.create(name=name).name]  # 1 (INSERT)
    out.append(dogs.count())  # 2
    out.append(list(dogs.values_list("name", flat=True)))  # 3
    out.append(dogs.filter(name=name).update(age=3))  # 4
    out.append(dogs.filter(age=3).exists())  # 5
    out.append(dogs.get(name=name).age)  # 6
    with connections[alias].cursor() as cursor:  # 7
        cursor.execute("SELECT %s", [7])
        out.append(cursor.fetchone()[0])
    return out


def seven(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"out": seven_queries(_alias(request), "seven")})


def n_plus_one(request: HttpRequest) -> JsonResponse:
    """The classic N+1: one query for the pets, then one per pet for its owner."""
    alias = _alias(request)
    names = [pet.owner.name for pet in Pet.objects.using(alias).order_by("pk")]
    return JsonResponse({"owners": names})


def select_related(request: HttpRequest) -> JsonResponse:
    """The same data in one query."""
    alias = _alias(request)
    names = [pet.owner.name for pet in Pet.objects.using(alias).select_related("owner").order_by("pk")]
    return JsonResponse({"owners": names})


def repeat(request: HttpRequest, times: int) -> JsonResponse:
    """One statement ``times`` times, each with other parameters; and executemany (one query)."""
    alias = _alias(request)
    with connections[alias].cursor() as cursor:
        for i in range(times):
            cursor.execute("SELECT %s", [i])
        cursor.executemany("INSERT INTO testapp_lawn (location) VALUES (%s)", [(str(i),) for i in range(9)])
    return JsonResponse({"times": times})


def none(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


def broken(request: HttpRequest) -> JsonResponse:
    with connections[_alias(request)].cursor() as cursor:
        cursor.execute("SELECT 1")
    raise RuntimeError("the view fails after one query")


def _owners(pk_from: int, n: int) -> list[str]:
    return [o.name for o in Owner.objects.filter(pk__gte=pk_from).order_by("pk")[:n]]


async def async_queries(request: HttpRequest, n: int) -> JsonResponse:
    """``n`` ORM queries through sync_to_async and the async ORM, yielding to other requests between."""
    got: list[int] = []
    for i in range(n):
        await asyncio.sleep(0.001)
        if i % 2:
            got.append(await Owner.objects.filter(pk__gte=i).acount())  # the async ORM (sync_to_async inside)
        else:
            got.append(len(await sync_to_async(_owners)(i, 3)))
    return JsonResponse({"n": n, "got": got})


def in_atomic(request: HttpRequest, shape: str) -> JsonResponse:
    """Three statements in ``transaction.atomic()``: committed, rolled back, or in a nested block."""
    alias = _alias(request)
    dogs = Dog.objects.using(alias)
    if shape == "rollback":
        try:
            with transaction.atomic(using=alias):
                dogs.create(name="gone")
                raise _RollBack
        except _RollBack:
            pass
        return JsonResponse({"exists": dogs.filter(name="gone").exists()})
    with transaction.atomic(using=alias):
        dogs.create(name="kept")
        if shape == "nested":
            with transaction.atomic(using=alias):
                dogs.filter(name="kept").update(age=4)
        else:
            dogs.filter(name="kept").update(age=4)
        count = dogs.filter(age=4).count()
    return JsonResponse({"count": count})


class _RollBack(Exception):
    pass
