"""Views that exercise every family: cached page, cache get/set, model writes, errors."""

from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.views.decorators.cache import cache_page
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Item

ITEMS_KEY = "shop:items"


@cache_page(5)
def home(request):
    # A whole cached page: cache gets on every request, a set when it expired.
    return TemplateResponse(request, "shop/home.html", {"count": Item.objects.count()})


def item_list(request):
    # Low-level caching: a hit skips the query, a miss runs it and fills the cache.
    items = cache.get(ITEMS_KEY)
    if items is None:
        items = list(Item.objects.order_by("id").values("id", "name", "hits")[:50])
        cache.set(ITEMS_KEY, items, 2)
    return JsonResponse({"items": items})


@csrf_exempt
@require_POST
def item_create(request):
    item = Item.objects.create(name=request.POST.get("name", "item"))
    cache.delete(ITEMS_KEY)
    return JsonResponse({"id": item.id}, status=201)


@csrf_exempt
@require_POST
def item_touch(request, pk):
    item = get_object_or_404(Item, pk=pk)
    item.hits += 1
    item.save()
    return JsonResponse({"id": item.id, "hits": item.hits})


@csrf_exempt
@require_POST
def item_delete(request, pk):
    get_object_or_404(Item, pk=pk).delete()
    cache.delete(ITEMS_KEY)
    return HttpResponse(status=204)


def boom(request):
    # An uncaught exception: django_http_exceptions_total_by_{type,view}, and a 500.
    raise RuntimeError("the demo's deliberate failure")


def db_error(request):
    # A failing query, handled by the view: django_db_errors_total{type=...} counts it.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM shop_no_such_table")
    except DatabaseError as exc:
        return JsonResponse({"error": type(exc).__name__}, status=200)
    return JsonResponse({"error": None})
