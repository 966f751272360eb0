"""ExportToDjangoView: content negotiation as prometheus_client's handlers, name[] filtering, multiprocess."""

from __future__ import annotations

import base64
import gzip
import os

import django
import pytest
from django.test import Client, override_settings
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus import exports

pytestmark = pytest.mark.urls("tests.http_project.urls")

# What prometheus_client's choose_encoder answers (and upstream's view with it): the text
# format 0.0.4 unless the 1.0.0 formats are asked for, which then name their escaping.
TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
OPENMETRICS_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8"

_probe = Counter("dp_exports_view_probe", "A counter only these tests touch.", ["kind"])
_probe.labels("a").inc(3)


def families(body: bytes) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def test_default_is_the_prometheus_text_format():
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == TEXT_0_0_4  # prometheus_client's choose_encoder's, as upstream's view
    assert "Content-Encoding" not in response
    assert 'dp_exports_view_probe_total{kind="a"} 3.0' in response.content.decode()


def test_openmetrics_when_the_scraper_asks_for_it():
    response = Client().get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")
    assert response["Vary"] == "Accept, Accept-Encoding"


def test_openmetrics_without_a_version_is_still_openmetrics():
    response = Client().get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response["Content-Type"] == OPENMETRICS


def test_gzip_when_accept_encoding_allows():
    response = Client().get("/metrics", headers={"accept-encoding": "br;q=1.0, gzip;q=0.8"})
    assert response["Content-Encoding"] == "gzip"
    assert b'dp_exports_view_probe_total{kind="a"} 3.0' in gzip.decompress(response.content)


def test_name_filter_restricts_the_output():
    response = Client().get("/metrics?name[]=dp_exports_view_probe_total")
    found = families(response.content)
    assert set(found) == {"dp_exports_view_probe"}


def test_several_names_and_an_unknown_one():
    response = Client().get(
        "/metrics?name[]=dp_exports_view_probe_total&name[]=no_such_metric&name[]=python_info"
    )
    assert set(families(response.content)) == {"dp_exports_view_probe", "python_info"}


@pytest.mark.parametrize("variable", ["PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"])
def test_multiprocess_dir_serves_the_aggregated_registry(monkeypatch, tmp_path, variable):
    # Files written by another process's prometheus_client values, read by MultiProcessCollector.
    from prometheus_client import values

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    value_class = values.MultiProcessValue(process_identifier=lambda: 4242)
    other = value_class("counter", "dp_other_process", "dp_other_process_total", (), (), "help")
    other.inc(7)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.setenv(variable, str(tmp_path))
    response = Client().get("/metrics")
    text = response.content.decode()
    assert "dp_other_process_total 7.0" in text
    # The in-process registry's own collectors are not what is served here.
    assert "dp_exports_view_probe_total" not in text


def test_view_is_the_url_named_in_the_contract():
    from django.urls import reverse

    assert reverse("prometheus-django-metrics") == "/metrics"
    assert exports.ExportToDjangoView.__name__ == "ExportToDjangoView"
    assert isinstance(REGISTRY, CollectorRegistry)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [('application/openmetrics-text; version="1.0.0"', OPENMETRICS),
     ("application/openmetrics-text;VERSION=1.0.0;q=1", OPENMETRICS),
     ("application/openmetrics-text;version=0.0.1", OPENMETRICS_0_0_1),
     ("*/*;q=0.1, application/openmetrics-text;q=0.2", OPENMETRICS)],
)  # fmt: skip
def test_openmetrics_in_every_form_rfc_9110_allows(accept, content_type):
    response = Client().get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response.content.endswith(b"# EOF\n")


FALLBACKS = [
    "application/openmetrics-text; version=abc",
    "text/plain;version=abc",
    "application/openmetrics-text;q=0",
    "application/openmetrics-text; version=999",
    "application/openmetrics-text;q=0.3, text/plain;q=0.9",
    "application/openmetrics-text;q=2",
    "application/openmetrics-text;q=nan",
    '"";;,=;',
    "x" * 10000,
    'application/openmetrics-text;version="1.0.0',
    "image/png",
]


@pytest.mark.parametrize("accept", FALLBACKS)
def test_anything_else_falls_back_to_the_text_format(accept):
    response = Client().get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    assert response["Content-Type"] == TEXT_0_0_4
    assert "dp_exports_view_probe_total" in response.content.decode()


@pytest.mark.parametrize(
    ("encoding", "gzipped"),
    [("gzip", True), ("GZIP;q=0.1", True), ("x-gzip", True), ("*", True), ("gzip;q=0", False),
     ("gzip;q=0.0, *;q=1", False), ("*;q=0", False), ("br", False), ("gzip;q=abc", False), ("", False)],
)  # fmt: skip
def test_gzip_only_when_accept_encoding_allows_it(encoding, gzipped):
    response = Client().get("/metrics", headers={"accept-encoding": encoding})
    assert ("Content-Encoding" in response) is gzipped
    body = gzip.decompress(response.content) if gzipped else response.content
    assert b"dp_exports_view_probe_total" in body


# --- Access rules (django_prometheus.access): the view answers 401/403 and no metric bytes ---


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def scrape(**extra: str):
    return Client().get("/metrics", **extra)


def assert_denied(response, status: int) -> None:
    assert response.status_code == status
    assert b"dp_exports_view_probe" not in response.content and b"# TYPE" not in response.content


TOKENS = {"PROMETHEUS_METRICS_BEARER_TOKENS": ["first-token", "second-token"]}
USERS = {"PROMETHEUS_METRICS_BASIC_AUTH": {"prometheus": "pa:ss wörd"}}


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", "Bearer first-toke", "Bearer first-tokenx", "Basic Zmlyc3QtdG9rZW4=",
     "Token first-token", basic("prometheus", "pa:ss wörd")],
)  # fmt: skip
def test_bearer_tokens_turn_away_anything_else(authorization):
    with override_settings(**TOKENS):
        response = scrape(**({"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}))
    assert_denied(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_every_configured_token_is_accepted():
    with override_settings(**TOKENS):
        for token in ("first-token", "second-token"):
            response = scrape(HTTP_AUTHORIZATION=f"Bearer {token}")
            assert response.status_code == 200
            assert b"dp_exports_view_probe" in response.content
        assert (
            scrape(HTTP_AUTHORIZATION="bearer   second-token ").status_code == 200
        )  # the scheme is case-blind


def test_basic_auth_and_tokens_are_alternatives():
    with override_settings(**TOKENS, **USERS):
        assert scrape(HTTP_AUTHORIZATION=basic("prometheus", "pa:ss wörd")).status_code == 200
        assert scrape(HTTP_AUTHORIZATION="Bearer first-token").status_code == 200
        for bad in (basic("prometheus", "pa:ss"), basic("Prometheus", "pa:ss wörd"), "Basic !!!", "Basic "):
            response = scrape(HTTP_AUTHORIZATION=bad)
            assert_denied(response, 401)
        assert (
            response["WWW-Authenticate"] == 'Bearer realm="metrics", Basic realm="metrics", charset="UTF-8"'
        )


def test_a_present_but_empty_setting_lets_nobody_in():
    with override_settings(PROMETHEUS_METRICS_BEARER_TOKENS=[""]):
        assert_denied(scrape(HTTP_AUTHORIZATION="Bearer "), 401)
        assert_denied(scrape(), 401)
    with override_settings(PROMETHEUS_METRICS_ALLOWED_IPS=[]):
        assert_denied(scrape(), 403)


def test_a_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("METRICS_TOKEN", "from-the-env")
    with override_settings(
        PROMETHEUS_METRICS_BEARER_TOKENS=os.environ["METRICS_TOKEN"]
    ):  # one string: one token
        assert scrape(HTTP_AUTHORIZATION="Bearer from-the-env").status_code == 200
        assert_denied(scrape(HTTP_AUTHORIZATION="Bearer f"), 401)


@pytest.mark.parametrize(
    ("allowed", "remote", "forwarded", "status"),
    [
        (["127.0.0.1"], "127.0.0.1", None, 200),
        (["10.0.0.0/8"], "127.0.0.1", None, 403),
        (["10.0.0.0/8"], "10.9.8.7", None, 200),
        (["10.0.0.0/8", "::1"], "::1", None, 200),
        (["10.0.0.0/8"], "::ffff:10.1.1.1", None, 200),
        # An entry written IPv4-mapped names the IPv4 client it maps, however that client arrives.
        (["::ffff:127.0.0.1"], "127.0.0.1", None, 200),
        (["::ffff:127.0.0.1"], "::ffff:127.0.0.1", None, 200),
        (["::ffff:7f00:1"], "127.0.0.1", None, 200),
        (["::ffff:10.0.0.0/104"], "10.9.8.7", None, 200),
        (["::ffff:127.0.0.1"], "127.0.0.2", None, 403),
        (["::ffff:127.0.0.1"], "::1", None, 403),
        (["::ffff:0:0/95"], "127.0.0.1", None, 403),  # not within the mapped range: IPv6 as written
        (["10.0.0.0/8"], "not an address", None, 403),
        # Without a trusted proxy, X-Forwarded-For is the client's own claim: ignored.
        (["10.0.0.0/8"], "127.0.0.1", "10.1.2.3", 403),
    ],
)
def test_allowed_ips_check_remote_addr(allowed, remote, forwarded, status):
    extra = {"REMOTE_ADDR": remote, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}
    with override_settings(PROMETHEUS_METRICS_ALLOWED_IPS=allowed):
        response = scrape(**extra)
    if status == 200:
        assert response.status_code == 200
    else:
        assert_denied(response, status)


@pytest.mark.parametrize(
    ("forwarded", "status"),
    [
        ("10.1.2.3", 200),
        ("192.0.2.1, 10.1.2.3", 200),  # the client may claim anything on the left
        ("10.1.2.3, 192.0.2.1", 403),  # the last untrusted hop decides
        ("10.1.2.3, 127.0.0.5", 200),  # through two trusted proxies
        ("garbage", 403),
        ("", 403),  # a proxy that says nothing: the proxy itself, not allowed
    ],
)
def test_trusted_proxies_hand_over_to_x_forwarded_for(forwarded, status):
    with override_settings(
        PROMETHEUS_METRICS_ALLOWED_IPS=["10.0.0.0/8"], PROMETHEUS_METRICS_TRUSTED_PROXIES=["127.0.0.0/8"]
    ):
        response = scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    if status == 200:
        assert response.status_code == 200
    else:
        assert_denied(response, status)


def test_every_rule_is_enforced():
    with override_settings(PROMETHEUS_METRICS_ALLOWED_IPS=["127.0.0.1"], **TOKENS):
        assert_denied(scrape(), 401)
        assert scrape(HTTP_AUTHORIZATION="Bearer first-token").status_code == 200
        assert_denied(scrape(REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION="Bearer first-token"), 403)


@pytest.mark.parametrize(
    "bad",
    [
        {"PROMETHEUS_METRICS_ALLOWED_IPS": ["10.0.0.0/33"]},
        {"PROMETHEUS_METRICS_TRUSTED_PROXIES": ["proxy.example"]},
        {"PROMETHEUS_METRICS_BASIC_AUTH": [("user", "password")]},
        {"PROMETHEUS_METRICS_BEARER_TOKENS": [1234]},
    ],
)
def test_settings_that_cannot_be_enforced_fail_closed_and_check_says_so(bad):
    from django.core.exceptions import ImproperlyConfigured

    from django_prometheus.checks import check_settings

    with override_settings(**bad):
        [error] = check_settings()
        assert error.id == "django_prometheus.E001" and next(iter(bad)) in error.msg
        with pytest.raises(ImproperlyConfigured):
            scrape()


@pytest.mark.skipif(django.VERSION < (5, 1), reason="LoginRequiredMiddleware is Django 5.1+")
def test_the_view_is_open_under_login_required_middleware():
    middleware = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    with override_settings(
        MIDDLEWARE=middleware, SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies"
    ):
        response = scrape()
    assert response.status_code == 200
    assert b"dp_exports_view_probe" in response.content
