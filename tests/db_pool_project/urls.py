from django.urls import include, path

from tests.db_pool_project import views

urlpatterns = [
    path("sleep", views.sleep),
    path("", include("django_prometheus.urls")),
]
