"""ExportToDjangoView: content negotiation as prometheus_client's handlers, name[] filtering, multiprocess."""

from __future__ import annotations

import gzip

import pytest
from django.test import Client
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus import exports

pytestmark = pytest.mark.urls("tests.http_project.urls")

_probe = Counter("dp_exports_view_probe", "A counter only these tests touch.", ["kind"])
_probe.labels("a").inc(3)


def families(body: bytes) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def test_default_is_the_prometheus_text_format():
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST  # prometheus_client's, as upstream's view
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
    "accept",
    ['application/openmetrics-text; version="1.0.0"', "application/openmetrics-text;VERSION=1.0.0;q=1",
     "application/openmetrics-text;version=0.0.1", "*/*;q=0.1, application/openmetrics-text;q=0.2"],
)  # fmt: skip
def test_openmetrics_in_every_form_rfc_9110_allows(accept):
    response = Client().get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    assert response["Content-Type"] == OPENMETRICS
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
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
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
