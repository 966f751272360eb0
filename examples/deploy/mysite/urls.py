from django.urls import include, path

from mysite import views

urlpatterns = [
    path("hello", views.hello, name="hello"),
    path("items", views.items, name="items"),
    # /metrics: in multiprocess mode the aggregate of every worker of this instance.
    path("", include("django_prometheus.urls")),
]
