"""PROMETHEUS_SERVER_TIMING through Django's test clients: entries, allow-list, streaming, append.

Both cores (the suite runs twice), WSGI and ASGI, the default path and the hook path.
gunicorn, uvicorn and Chromium: tests/test_server_timing_servers.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client
from django_prometheus._core import _http

from django_prometheus import servertiming
from django_prometheus.middleware import PrometheusBeforeMiddleware
from tests.test_http_options import HookAfter  # noqa: F401  (the hook path's middleware)


class HookBefore(PrometheusBeforeMiddleware):
    """Overrides ``label_metric``: the Before middleware's hook path."""

    def label_metric(self, metric, request, response=None, **labels):
        return super().label_metric(metric, request, response, **labels)


pytestmark = [
    pytest.mark.urls("tests.timing_project.urls"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:asgiref"),
]

BEFORE = "django_prometheus.middleware.PrometheusBeforeMiddleware"
AFTER = "django_prometheus.middleware.PrometheusAfterMiddleware"
HOOK_AFTER = "tests.test_http_options.HookAfter"
ENTRY = re.compile(r'^(?P<name>[a-z]+);dur=(?P<dur>[0-9]+\.[0-9]{3})(?:;desc="(?P<desc>[^"]*)")?$')


@pytest.fixture(autouse=True, scope="module")
def _families_unregistered_afterwards():
    # Other modules compare every django_http_* family in the registry with upstream's.
    yield
    from prometheus_client import REGISTRY

    from django_prometheus.db import per_request

    for family in per_request._families or ():
        REGISTRY.unregister(family)
    per_request._families = None
    per_request._route_cells.clear()


@pytest.fixture(autouse=True)
def _project(settings):
    settings.MIDDLEWARE = [BEFORE, "django.middleware.common.CommonMiddleware", AFTER]
    settings.PROMETHEUS_SERVER_TIMING = True
    settings.TIMING_CACHE_ALIAS = "timing"
    settings.CACHES = {
        **settings.CACHES,
        "timing": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache", "LOCATION": "timing"},
    }


def entries(header: str | None) -> list[dict[str, str | None]]:
    assert header is not None, "no Server-Timing header"
    found = []
    for part in header.split(", "):
        matched = ENTRY.match(part)
        assert matched, f"not an entry of ours: {part!r} in {header!r}"
        found.append(matched.groupdict())
    return found


def get(path: str, **extra: str):
    return Client(raise_request_exception=False).get(path, **extra)


def test_off_no_header_and_no_features(settings):
    settings.PROMETHEUS_SERVER_TIMING = False
    response = get("/plain")
    assert "Server-Timing" not in response
    assert _http.get_features() is None  # nothing installed: the default path is untouched


def test_on_app_entry_only_without_db_and_cache_accounting():
    response = get("/plain")
    (app,) = entries(response["Server-Timing"])
    assert app["name"] == "app" and app["desc"] is None
    assert float(app["dur"]) >= 0.0


@pytest.mark.django_db(databases=["sqlite"])
@pytest.mark.parametrize("middleware", ["core", "hooks", "after-only"])
def test_db_and_cache_entries_count_this_requests_work(settings, middleware):
    settings.TIMING_DB_ALIAS = "sqlite"
    settings.PROMETHEUS_REQUEST_DB_METRICS = True
    settings.PROMETHEUS_CACHE_OPERATION_METRICS = True
    settings.MIDDLEWARE = {
        "core": [BEFORE, AFTER],
        "hooks": [BEFORE, HOOK_AFTER],
        "after-only": [AFTER],
    }[middleware]
    for _ in range(2):  # the second request counts its own work only
        response = get("/page")
        found = {e["name"]: e for e in entries(response["Server-Timing"])}
        assert list(found) == ["app", "db", "cache"]
        assert found["db"]["desc"] == "3 queries"
        assert found["cache"]["desc"] == "2 ops"
        assert float(found["db"]["dur"]) > 0 and float(found["cache"]["dur"]) > 0
        assert float(found["app"]["dur"]) >= float(found["db"]["dur"])


@pytest.mark.django_db(databases=["sqlite"])
def test_asgi_entries(settings):
    settings.TIMING_DB_ALIAS = "sqlite"
    settings.PROMETHEUS_REQUEST_DB_METRICS = True
    settings.PROMETHEUS_CACHE_OPERATION_METRICS = True

    async def run():
        client = AsyncClient(raise_request_exception=False)
        return [await client.get(path) for path in ("/plain", "/apage", "/stream")]

    plain, page, stream = asyncio.run(run())
    assert [e["name"] for e in entries(plain["Server-Timing"])] == ["app", "db", "cache"]
    found = {e["name"]: e for e in entries(page["Server-Timing"])}
    assert found["db"]["desc"] == "3 queries" and found["cache"]["desc"] == "2 ops"
    assert "Server-Timing" not in stream


def test_plain_request_with_accounting_on_says_zero(settings):
    settings.PROMETHEUS_REQUEST_DB_METRICS = True
    settings.PROMETHEUS_CACHE_OPERATION_METRICS = True
    found = {e["name"]: e for e in entries(get("/plain")["Server-Timing"])}
    assert found["db"]["desc"] == "0 queries" and found["db"]["dur"] == "0.000"
    assert found["cache"]["desc"] == "0 ops"


def test_never_on_streaming_responses():
    assert "Server-Timing" not in get("/stream")


def test_a_views_own_header_is_kept_and_ours_appended_once():
    response = get("/own")
    values = response.headers.get("Server-Timing")
    assert values.startswith('view;dur=1.5;desc="own", app;dur=')
    assert values.count("app;dur=") == 1
    assert len(response.headers._store) == len({k.lower() for k in response.headers})  # one header line


@pytest.mark.parametrize(
    ("allowed", "remote", "forwarded", "proxies", "shown"),
    [
        (None, "127.0.0.1", None, None, True),  # default: loopback only
        (None, "::1", None, None, True),
        (None, "10.1.2.3", None, None, False),
        (None, "garbage", None, None, False),
        (["10.0.0.0/8"], "10.1.2.3", None, None, True),
        (["10.0.0.0/8"], "127.0.0.1", None, None, False),
        # Behind a trusted proxy: the client is the last untrusted hop, as for /metrics.
        (None, "127.0.0.1", "10.9.9.9", ["127.0.0.1"], False),
        (["10.9.9.0/24"], "127.0.0.1", "10.9.9.9", ["127.0.0.1"], True),
        (["10.9.9.0/24"], "127.0.0.1", "10.9.9.9, 192.0.2.1", ["127.0.0.1"], False),
        # An untrusted peer's X-Forwarded-For is ignored: it cannot choose its address.
        (["127.0.0.1"], "10.1.2.3", "127.0.0.1", None, False),
        ([], "127.0.0.1", None, None, False),  # an empty list: nobody
    ],
)
@pytest.mark.parametrize("accounting", [False, True], ids=["app-alone", "with-cache"])
def test_only_allowed_clients_see_it(settings, allowed, remote, forwarded, proxies, shown, accounting):
    # App alone: the Before recorder writes it; with an accounting on, the features' core does.
    settings.PROMETHEUS_CACHE_OPERATION_METRICS = accounting
    if allowed is not None:
        settings.PROMETHEUS_SERVER_TIMING_ALLOWED_IPS = allowed
    if proxies is not None:
        settings.PROMETHEUS_METRICS_TRUSTED_PROXIES = proxies
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    assert ("Server-Timing" in get("/plain", **extra)) is shown


def test_allow_decisions_are_bounded_under_hostile_addresses(settings):
    settings.PROMETHEUS_METRICS_TRUSTED_PROXIES = ["127.0.0.1"]
    from django.http import HttpResponse
    from django.test import RequestFactory

    factory = RequestFactory()
    core = servertiming.core_writer()
    settings.PROMETHEUS_CACHE_OPERATION_METRICS = True
    features = servertiming.build()
    for i in range(3000):
        request = factory.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"10.0.{i // 256}.{i % 256}")
        response = HttpResponse()
        core(request, response, 0.001)
        features(request, response, 0.001, None, None)
        assert "Server-Timing" not in response
    assert core.decided() <= 1024
    assert features.decided() <= 1024


def test_the_before_recorder_writes_the_app_entry_alone(settings):
    # App alone: no features installed (the default path plus the writer); with an accounting on,
    # the features' core writes all entries and the recorder none.
    get("/plain")
    assert _http.get_features() is None
    assert servertiming.build() is None and isinstance(servertiming.core_writer(), _http.ServerTiming)
    settings.PROMETHEUS_CACHE_OPERATION_METRICS = True
    assert servertiming.core_writer() is None and servertiming.build() is not None
    assert _http.get_features() is not None


@pytest.mark.parametrize("middleware", ["hooks-before", "hooks-after"])
def test_app_entry_on_the_hook_path(settings, middleware):
    settings.MIDDLEWARE = {
        "hooks-before": ["tests.test_server_timing.HookBefore", AFTER],
        "hooks-after": [BEFORE, HOOK_AFTER],
    }[middleware]
    (app,) = entries(get("/plain")["Server-Timing"])
    assert app["name"] == "app"
    assert "Server-Timing" not in get("/stream")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROMETHEUS_SERVER_TIMING", "yes"),
        ("PROMETHEUS_SERVER_TIMING_ALLOWED_IPS", "127.0.0.1"),
        ("PROMETHEUS_SERVER_TIMING_ALLOWED_IPS", ["not-an-address"]),
    ],
)
def test_bad_settings_are_clear_errors(settings, name, value):
    # The features are rebuilt at once (setting_changed): the change itself fails, naming the setting.
    with pytest.raises(ImproperlyConfigured, match=name):
        setattr(settings, name, value)
    assert getattr(settings, name, None) != value  # and it was not kept


def test_default_is_loopback_only():
    assert servertiming.allowed_networks()[0] == [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1"),
    ]


class _Accounted:
    # What the per-request accounting states hand the writer (``_db``'s and ``_cache``'s).
    def __init__(self, seconds, queries=None, operations=None):
        self.seconds, self.queries, self.operations = seconds, queries, operations


@pytest.mark.parametrize(
    "seconds",
    [
        0.0,
        1e-9,
        0.0000005,  # a decimal tie in milliseconds: the core falls back to Python's digits
        0.0000015,
        0.0012345,
        0.0123455,
        0.25,
        1.0,
        3.999_999_5,
        999.999_999_9,
        1e6,  # beyond the core's exact range
        1e12,
        -0.001,
    ],
)
def test_durations_are_pythons_format(seconds):
    # The core writes the digits in C; they must be format(ms, ".3f")'s, ties and all.
    db, cache = _Accounted(seconds, queries=7), _Accounted(seconds / 3, operations=10**18)
    expected = (
        f'app;dur={seconds * 1000.0:.3f}, db;dur={seconds * 1000.0:.3f};desc="7 queries", '
        f'cache;dur={seconds / 3 * 1000.0:.3f};desc="{10**18} ops"'
    )
    assert servertiming.value(seconds, db, cache) == expected
    assert servertiming.value(seconds) == f"app;dur={seconds * 1000.0:.3f}"


def test_durations_agree_with_python_over_many_values():
    import random

    rng = random.Random(27)
    for _ in range(20000):
        seconds = rng.choice([rng.random() * 10.0 ** -rng.randint(0, 7), rng.randint(0, 10**7) / 10**7])
        assert servertiming.value(seconds) == f"app;dur={seconds * 1000.0:.3f}", seconds
