from django.urls import path

from django_prometheus.exports import ExportToDjangoView
from tests.db_request_project import views

urlpatterns = [
    path("seven/", views.seven),
    path("n-plus-one/", views.n_plus_one),
    path("select-related/", views.select_related),
    path("repeat/<int:times>/", views.repeat),
    path("none/", views.none),
    path("broken/", views.broken),
    path("atomic/<str:shape>/", views.in_atomic),
    # One route per count, so concurrent requests land in distinct series.
    path("async/3/", views.async_queries, {"n": 3}),
    path("async/5/", views.async_queries, {"n": 5}),
    path("async/10/", views.async_queries, {"n": 10}),
    path("metrics", ExportToDjangoView),
]
