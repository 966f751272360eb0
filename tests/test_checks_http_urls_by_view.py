from tests.test_checks_http import by_view as urlpatterns  # noqa: F401
