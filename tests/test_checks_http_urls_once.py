from tests.test_checks_http import once as urlpatterns  # noqa: F401
