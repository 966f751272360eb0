"""PROMETHEUS_DISABLED_METRICS (issue 27 item 3): listed families are not registered nor recorded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.test import Client
from django_prometheus._core import _http
from prometheus_client import REGISTRY, generate_latest

from django_prometheus import checks_http, disabled
from django_prometheus.http.cells import HttpCells
from django_prometheus.middleware import Metrics
from tests.http_project.checks import MIDDLEWARE, TEMPLATES, Delta

pytestmark = [
    pytest.mark.urls("tests.http_project.urls"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:asgiref"),
]

ROOT = Path(__file__).resolve().parent.parent
OFF = [
    "django_http_requests_body_total_bytes",  # a histogram
    "django_http_responses_total_by_status_total",  # a labelled counter, as exposed
    "django_http_requests_before_middlewares_total",  # an unlabelled counter (Before's)
    "django_http_exceptions_total_by_view",  # a counter by its declared name, without _total
]


@pytest.fixture(autouse=True)
def _project(settings):
    settings.MIDDLEWARE = MIDDLEWARE
    settings.TEMPLATES = TEMPLATES
    yield
    settings.PROMETHEUS_DISABLED_METRICS = []
    Client().get("/ok")  # the default families back for the next tests


def exposed() -> set[str]:
    return {family.name for family in REGISTRY.collect()}


def scenario() -> None:
    client = Client(raise_request_exception=False)
    client.get("/ok")
    client.post("/echo", b"abc", content_type="text/plain")
    client.get("/boom")


@pytest.mark.parametrize(
    "middleware", [MIDDLEWARE, [MIDDLEWARE[0], "tests.test_http_options.HookAfter"]], ids=["core", "hooks"]
)
def test_disabled_http_families_are_neither_registered_nor_recorded(settings, middleware):
    settings.MIDDLEWARE = middleware
    settings.PROMETHEUS_DISABLED_METRICS = OFF
    d = Delta()
    scenario()
    names = exposed()
    text = generate_latest(REGISTRY).decode()
    for gone in (
        "django_http_requests_body_total_bytes",
        "django_http_responses_total_by_status",
        "django_http_requests_before_middlewares",
        "django_http_exceptions_total_by_view",
    ):
        assert gone not in names
        assert f"# TYPE {gone} " not in text and f"# TYPE {gone}_total " not in text
    # The others still count.
    assert d("django_http_responses_before_middlewares_total") == 3
    assert d("django_http_exceptions_total_by_type_total", type="Boom") == 1
    assert (
        d("django_http_responses_total_by_status_view_method_total", status="200", view="ok", method="GET")
        == 1
    )
    assert d("django_http_responses_body_total_bytes_count") == 3
    metrics = Metrics.get_instance()
    assert isinstance(metrics.requests_body_bytes, disabled.DisabledMetric)
    # Enabled again: registered and counting.
    settings.PROMETHEUS_DISABLED_METRICS = []
    scenario()
    assert "django_http_requests_body_total_bytes" in exposed()
    assert REGISTRY.get_sample_value("django_http_responses_total_by_status_total", {"status": "500"}) == 1


def test_the_core_gets_no_cell_for_a_disabled_family(settings):
    settings.PROMETHEUS_DISABLED_METRICS = OFF
    Client().get("/ok")
    cells = HttpCells(Metrics.get_instance())
    assert cells.requests_body_bytes is _http.NO_CELL
    assert cells.requests_total is _http.NO_CELL
    assert cells.responses_by_status("200") is _http.NO_CELL
    assert cells.responses_by_charset("utf-8") is not _http.NO_CELL


def test_disabled_opt_in_families(settings):
    settings.PROMETHEUS_ROUTE_METRICS = True
    settings.PROMETHEUS_INFLIGHT_METRICS = True
    settings.PROMETHEUS_DISABLED_METRICS = [
        "django_http_route_requests_total",
        "django_http_requests_in_progress",
    ]
    try:
        Client().get("/ok")
        names = exposed()
        assert "django_http_route_requests" not in names
        assert "django_http_requests_in_progress" not in names
        assert (
            REGISTRY.get_sample_value(
                "django_http_route_request_duration_seconds_count", {"route": "ok", "method": "GET"}
            )
            == 1
        )
    finally:
        settings.PROMETHEUS_ROUTE_METRICS = False
        settings.PROMETHEUS_INFLIGHT_METRICS = False


def test_unknown_names_are_reported_with_close_matches(settings):
    settings.PROMETHEUS_DISABLED_METRICS = [
        "django_http_requests_body_total_byte",  # a typo
        "django_db_execute_total",
        "django_db_execute",  # a counter's declared name
        "django_cache_get_total",
        "django_http_route_requests_total",  # made on first use
        "django_migrations_applied_total",
    ]
    (warning,) = [m for m in checks_http.check_options() if m.id == "django_prometheus.W205"]
    assert "'django_http_requests_body_total_byte'" in warning.msg
    assert "django_http_requests_body_total_bytes" in warning.hint


def test_names_include_the_namespace(settings):
    settings.PROMETHEUS_METRIC_NAMESPACE = "shop"
    settings.PROMETHEUS_DISABLED_METRICS = [
        "shop_django_http_ajax_requests_total",
        "shop_django_http_route_requests_total",
        "shop_django_http_ajax_request_total",
    ]
    assert checks_http.unknown_names() == ["shop_django_http_ajax_request_total"]


MODULE_LEVEL = """
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_prometheus"],
    DATABASES={"default": {"ENGINE": "django_prometheus.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}},
    PROMETHEUS_DISABLED_METRICS=[
        "django_db_execute_total", "django_db_query_duration_seconds", "django_cache_get_total",
        "django_cache_get_hits_total", "django_model_inserts_total", "django_migrations_applied_total",
    ],
    PROMETHEUS_EXPORT_MIGRATIONS=False,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()
from django.core.cache import cache
from django.db import connection
from prometheus_client import REGISTRY

cache.set("k", 0)
assert cache.get("k") == 0 and cache.get("nope", "d") == "d"
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
    assert cursor.fetchone() == (1,)
import django_prometheus.migrations, django_prometheus.models  # noqa
names = {f.name for f in REGISTRY.collect()}
for gone in ("django_db_execute", "django_db_query_duration_seconds", "django_cache_get",
             "django_cache_get_hits", "django_model_inserts", "django_migrations_applied_total"):
    assert gone not in names, gone
for kept in ("django_db_new_connections", "django_cache_get_misses", "django_model_updates",
             "django_migrations_unapplied_total"):
    assert kept in names, kept
assert REGISTRY.get_sample_value("django_cache_get_misses_total", {"backend": "locmem"}) == 1
labels = {"alias": "default", "vendor": "sqlite"}
assert REGISTRY.get_sample_value("django_db_new_connections_total", labels) == 1
print("ok")
"""


@pytest.mark.parametrize("core", ["compiled", "pure"])
def test_module_level_families_db_cache_models_migrations(core):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if core == "pure":
        env["DJANGO_PROMETHEUS_NO_EXTENSIONS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MODULE_LEVEL)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
