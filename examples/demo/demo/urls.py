from django.urls import include, path
from shop import views

urlpatterns = [
    path("", views.home, name="home"),
    path("items/", views.item_list, name="item-list"),
    path("items/new", views.item_create, name="item-create"),
    path("items/<int:pk>/touch", views.item_touch, name="item-touch"),
    path("items/<int:pk>/delete", views.item_delete, name="item-delete"),
    path("orders/n-plus-one", views.orders_n_plus_one, name="orders-n-plus-one"),
    path("orders/select-related", views.orders_select_related, name="orders-select-related"),
    path("boom", views.boom, name="boom"),
    path("db-error", views.db_error, name="db-error"),
    # /metrics, as in any project using django-prometheus
    path("", include("django_prometheus.urls")),
]
