from django.urls import include, path

from tests.cache_project import views

urlpatterns = [
    path("sync/<str:alias>", views.sync_ops),
    path("async/<str:alias>", views.async_ops),
    path("", include("django_prometheus.urls")),
]
