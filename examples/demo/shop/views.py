"""The demo's pages: each one exercises a part of django-prometheus (the home page says which)."""

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import cache_page
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Item, Order

ITEMS_KEY = "shop:items"


def _done(request, status, payload):
    """A form (it sends `next`) goes back to its page; the traffic driver gets JSON."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return HttpResponseRedirect(target)
    return JsonResponse(payload, status=status)


@cache_page(5)
def home(request):
    # A whole cached page: cache gets on every request, a set when it expired.
    return TemplateResponse(
        request,
        "shop/home.html",
        {
            "count": Item.objects.count(),
            "host": request.get_host(),
            "vendor": connection.vendor,
            "cache": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
            "protected": bool(getattr(settings, "PROMETHEUS_METRICS_BEARER_TOKENS", None)),
            "exemplars": getattr(settings, "PROMETHEUS_EXEMPLARS", False),
        },
    )


def item_list(request):
    # Low-level caching: a hit skips the query, a miss runs it and fills the cache.
    items = cache.get(ITEMS_KEY)
    if items is None:
        items = list(Item.objects.order_by("id").values("id", "name", "hits")[:50])
        cache.set(ITEMS_KEY, items, 2)
    if request.GET.get("format") == "json":
        return JsonResponse({"items": items})
    return TemplateResponse(request, "shop/items.html", {"items": items})


# The forms post without a session and so does the traffic driver: no CSRF token to check here.
# (A real site keeps CsrfViewMiddleware's check and {% csrf_token %} in its forms.)
@csrf_exempt
@require_POST
def item_create(request):
    item = Item.objects.create(name=request.POST.get("name", "").strip()[:100] or "item")
    cache.delete(ITEMS_KEY)
    return _done(request, 201, {"id": item.id})


@csrf_exempt
@require_POST
def item_touch(request, pk):
    item = get_object_or_404(Item, pk=pk)
    item.hits += 1
    item.save()
    cache.delete(ITEMS_KEY)
    return _done(request, 200, {"id": item.id, "hits": item.hits})


@csrf_exempt
@require_POST
def item_delete(request, pk):
    get_object_or_404(Item, pk=pk).delete()
    cache.delete(ITEMS_KEY)
    if request.POST.get("next"):
        return _done(request, 204, {})
    return HttpResponse(status=204)


def orders_n_plus_one(request):
    # One query for the orders, then one per order for its customer: the N+1 that
    # django_http_request_db_repeated_queries_total{route="orders/n-plus-one"} counts.
    orders = list(Order.objects.order_by("id"))
    rows = [(o.id, o.customer.name, o.total) for o in orders]
    return TemplateResponse(
        request, "shop/orders.html", {"rows": rows, "twin": "select-related", "queries": 1 + len(rows)}
    )


def orders_select_related(request):
    # The same page in one query (a JOIN): no repeated query.
    orders = list(Order.objects.select_related("customer").order_by("id"))
    rows = [(o.id, o.customer.name, o.total) for o in orders]
    return TemplateResponse(request, "shop/orders.html", {"rows": rows, "twin": "n-plus-one", "queries": 1})


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
