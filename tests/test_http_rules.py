"""Adding an HTTP family: a spec in ``http/metrics.py`` with its ``record`` rule, nothing else.

The test adds one, as a newcomer would, and checks that every path records it:
the compiled or pure recorder (whichever this run uses), sync and async, and the
hook-by-hook extension path; that a failing rule breaks no request; and that a
family without a rule (upstream's 19) is untouched by the mechanism.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.test import AsyncClient, Client

from django_prometheus.http import metrics as http_metrics
from django_prometheus.http.metrics import Spec
from django_prometheus.metrics import Counter, Histogram
from django_prometheus.middleware import Metrics, PrometheusAfterMiddleware, PrometheusBeforeMiddleware
from tests.http_project.checks import TEMPLATES, Delta, metrics_instead

pytestmark = [
    pytest.mark.urls("tests.http_project.urls"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:asgiref"),
]

KIND = "django_http_test_responses_total_by_content_type"
SIZE = "django_http_test_response_header_count"


def _by_content_kind(metric, request, response):
    content_type = response.get("Content-Type", "")
    metric.labels(kind=content_type.split(";", 1)[0].strip() or "none", method=request.method).inc()


def _header_count(metric, request, response):
    metric.observe(len(response.items()))


def _failing(metric, request, response):
    raise RuntimeError("a broken rule")


NEW_SPECS = {
    "responses_by_content_kind": Spec(
        Counter,
        KIND,
        "Count of responses by the major type of their content.",
        ("kind", "method"),
        _by_content_kind,
    ),
    "response_header_count": Spec(Histogram, SIZE, "Headers per response.", (), _header_count),
    "failing_rule": Spec(Counter, "django_http_test_failing_total", "A rule that raises.", (), _failing),
}


class RuleMetrics(Metrics):
    pass


class RuleBefore(PrometheusBeforeMiddleware):
    metrics_cls = RuleMetrics


class RuleAfter(PrometheusAfterMiddleware):
    metrics_cls = RuleMetrics


class HookAfter(RuleAfter):
    # Overriding label_metric selects upstream's hook-by-hook path.
    def label_metric(self, metric, request, response=None, **labels):
        return super().label_metric(metric, request, response=response, **labels)


@pytest.fixture
def new_families(settings, monkeypatch):
    """``SPECS`` with the three new specs, and a ``Metrics`` instance that registered them."""
    Metrics.get_instance()  # before the patch: upstream's families only
    for attr, spec in NEW_SPECS.items():
        monkeypatch.setitem(http_metrics.SPECS, attr, spec)
    settings.TEMPLATES = TEMPLATES
    with metrics_instead(RuleMetrics) as instance:
        yield instance


def _use(settings, after):
    settings.MIDDLEWARE = [f"{__name__}.RuleBefore", f"{__name__}.{after.__name__}"]


@pytest.mark.parametrize("after", [RuleAfter, HookAfter], ids=["default-path", "hook-path"])
def test_a_spec_with_a_rule_is_recorded_on_every_path(new_families, settings, after, caplog):
    _use(settings, after)
    d = Delta()
    c = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="django_prometheus"):
        assert c.get("/ok").status_code == 200
        assert c.post("/latin").status_code == 200
        assert c.get("/boom").status_code == 500
    assert d(f"{KIND.removesuffix('_total')}_total", kind="text/html", method="GET") == 2
    assert d(f"{KIND.removesuffix('_total')}_total", kind="text/plain", method="POST") == 1
    assert d(f"{SIZE}_count") == 3
    # The failing rule was logged once per response and changed no response.
    assert sum("a broken rule" in (r.exc_text or "") for r in caplog.records) == 3
    # Upstream's families are recorded as before, beside the new ones.
    assert d("django_http_responses_total_by_status_total", status="200") == 2
    assert d("django_http_responses_total_by_status_total", status="500") == 1


def test_a_rule_is_recorded_under_asgi(new_families, settings):
    _use(settings, RuleAfter)
    d = Delta()

    async def requests():
        c = AsyncClient(raise_request_exception=False)
        assert (await c.get("/aok")).status_code == 200
        assert (await c.get("/ok")).status_code == 200

    asyncio.run(requests())
    assert d(f"{KIND.removesuffix('_total')}_total", kind="text/html", method="GET") == 2
    assert d(f"{SIZE}_count") == 2


def test_upstream_specs_have_no_rule():
    # Their rules are written once in the recorders (fast path) and the hook path.
    assert all(spec.record is None for spec in http_metrics.SPECS.values())
    assert len(http_metrics.SPECS) == 19
