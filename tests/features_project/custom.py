"""Middlewares on the extension path (``label_metric`` overridden), for the exclusion tests."""

from __future__ import annotations

from typing import Any

from django_prometheus.middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware


class _Labelled:
    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: str) -> Any:
        return super().label_metric(metric, request, response, **labels)  # type: ignore[misc]


class LabelledBefore(_Labelled, PrometheusBeforeMiddleware):
    pass


class LabelledAfter(_Labelled, PrometheusAfterMiddleware):
    pass
