from django.urls import include, path

from tests.mp_project import views

urlpatterns = [
    path("ok", views.ok, name="ok"),
    path("create", views.create, name="create"),
    path("missing", views.missing, name="missing"),
    path("boom", views.boom, name="boom"),
    path("echo", views.echo, name="echo"),
    path("spawn", views.spawn, name="spawn"),
    path("scrape", views.scrape, name="scrape"),
    path("pid", views.pid, name="pid"),
    path("slow", views.slow, name="slow"),
    path("", include("django_prometheus.urls")),
]
