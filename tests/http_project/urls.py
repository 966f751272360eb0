from django.urls import include, path, re_path

from . import views

urlpatterns = [
    path("", include("django_prometheus.urls")),
    path("ok", views.ok, name="ok"),
    path("aok", views.aok, name="aok"),
    path("echo", views.echo, name="echo"),
    path("slug/<str:slug>", views.slug, name="slug"),
    path("boom", views.boom, name="boom"),
    path("aboom", views.aboom, name="aboom"),
    path("stream", views.stream, name="stream"),
    path("latin", views.latin, name="latin"),
    path("template", views.template, name="template"),
    re_path(r"^unnamed$", views.unnamed),
]
