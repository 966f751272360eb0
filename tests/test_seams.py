"""What Python hands the core satisfies the seams' Protocols (``_core/_seams.py``), on both cores."""

from __future__ import annotations

import pytest
from django_prometheus._core import _http, _seams

from django_prometheus.http.cells import HttpCells
from django_prometheus.http.metrics import SPECS
from django_prometheus.middleware import Metrics
from tests.http_project.checks import MIDDLEWARE
from tests.test_core_features import _config

NOT_FAMILIES = {"settings", "response_types", "secure_methods", "scheme_sources"}


def test_the_http_cells_are_what_the_recorders_read():
    cells = HttpCells(Metrics.get_instance())
    assert isinstance(cells, _seams.HttpCells)
    # One line per family of SPECS, typed by whether it is labelled.
    families = {k: v for k, v in _seams.HttpCells.__annotations__.items() if k not in NOT_FAMILIES}
    assert families == {attr: "Labels" if spec.labelnames else "Cell" for attr, spec in SPECS.items()}
    assert not isinstance(object(), _seams.HttpCells)


def test_each_core_builds_its_recorders_from_the_http_cells(twin):
    cells = HttpCells(Metrics.get_instance())
    twin.http.BeforeRecorder(cells)
    twin.http.AfterRecorder(cells)


def test_each_cores_features_object_is_the_features_seam(twin):
    features = twin.features.Features(_config(twin.cells))
    assert isinstance(features, _seams.Features)
    assert not isinstance(object(), _seams.Features)


@pytest.fixture
def _features_reset():
    yield
    from django_prometheus.http import features

    features._views_marked = False
    features.install()


@pytest.mark.urls("tests.features_project.urls")
def test_what_the_package_installs_is_the_features_seam(settings, _features_reset):
    from django_prometheus.http import features

    settings.MIDDLEWARE = MIDDLEWARE
    settings.PROMETHEUS_ROUTE_METRICS = True
    features.install()
    assert isinstance(_http.get_features(), _seams.Features)
