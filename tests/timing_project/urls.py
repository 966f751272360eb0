from django.urls import include, path

from . import views

urlpatterns = [
    path("", include("django_prometheus.urls")),
    path("page", views.page, name="page"),
    path("apage", views.apage, name="apage"),
    path("plain", views.plain, name="plain"),
    path("own", views.own, name="own"),
    path("stream", views.stream, name="stream"),
]
