"""URLs of the features project: every way Django, DRF and django-ninja name a route."""

from django.urls import include, path, re_path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("items", views.ItemViewSet, basename="item")

shop = (
    [
        path("items/<int:pk>/", views.item, name="item"),
        re_path(r"^legacy/(?P<pk>[0-9]+)/$", views.item, name="legacy"),
    ],
    "shop",
)

urlpatterns = [
    path("", include("django_prometheus.urls")),
    path("ok", views.ok, name="ok"),
    path("aok", views.aok, name="aok"),
    path("status/<int:code>", views.status, name="status"),
    path("boom", views.boom, name="boom"),
    path("stream", views.stream, name="stream"),
    path("astream", views.astream, name="astream"),
    path("short-stream", views.short_stream, name="short-stream"),
    path("probe", views.probe, name="probe"),
    path("untracked", views.untracked, name="untracked"),
    path("untracked-class", views.UntrackedView.as_view(), name="untracked-class"),
    path("by-name", views.by_name, name="by-name"),
    path("shop/", include(shop, namespace="shop")),
    path("drf/", include(router.urls)),
    *([] if views.api is None else [path("ninja/", views.api.urls)]),
]
