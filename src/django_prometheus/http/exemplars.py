"""Exemplars on the latency histograms: the current OpenTelemetry span's ``trace_id`` and ``span_id``.

``PROMETHEUS_EXEMPLARS = True`` (default off). A marked histogram (``apply``) asks
``capture()`` on every observation; when a sampled, recording span is current,
its ids become the exemplar of the bucket the observation falls in (one per
bucket, the latest wins), shown only to scrapers that negotiate OpenMetrics.
Off, or without ``opentelemetry-api`` installed, or in multiprocess mode
(prometheus_client's files carry no exemplars), nothing is imported and
``apply`` marks nothing: the observe path pays one pointer check, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django_prometheus import conf
from django_prometheus._core import _features

__all__ = ["apply", "capture", "enabled"]

_capture: Callable[[], dict[str, str] | None] | None = None
_missing = False  # opentelemetry-api is not installed (said once)


def enabled() -> bool:
    """``PROMETHEUS_EXEMPLARS`` (follows ``override_settings``), and not in multiprocess mode."""
    return conf.get_or_default("PROMETHEUS_EXEMPLARS") and conf.multiprocess_dir() is None


def capture() -> Callable[[], dict[str, str] | None] | None:
    """The capture function (current OpenTelemetry span -> exemplar labels); None without OpenTelemetry."""
    global _capture, _missing
    if _capture is None:
        if _missing:
            return None
        try:
            from opentelemetry import trace
        except ImportError:
            _missing = True
            logging.getLogger("django_prometheus").warning(
                "django_prometheus: PROMETHEUS_EXEMPLARS is on but opentelemetry-api is not installed "
                "(pip install 'django-prometheus-compiled[opentelemetry]'); no exemplars are recorded"
            )
            return None
        get_current_span = trace.get_current_span
        # A request observes two or three latencies under one span: format its ids once.
        # One (span context, labels) tuple, replaced whole: threads never see a mixed pair.
        last: list[tuple[Any, dict[str, str] | None]] = [(None, None)]

        def span_ids() -> dict[str, str] | None:
            # OpenTelemetry's default exemplar filter (trace-based): only a sampled, recording
            # span leads to a trace the tracing backend has. 32 + 16 hex digits and the two
            # names are 63 runes, well within OpenMetrics' 128.
            span = get_current_span()
            if not span.is_recording():
                return None
            ctx = span.get_span_context()
            seen = last[0]
            if seen[0] is ctx:
                return seen[1]
            if not ctx.trace_flags.sampled:
                return None
            labels = {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
            last[0] = (ctx, labels)
            return labels

        var, span_key = _current_context()
        # The core's guard in front of it: a current Context without a span in it (every
        # request outside a trace) answers None without a Python call. Its bound ``capture``
        # method, not the guard itself: a histogram calls that by vectorcall (the compiled
        # guard's ``__call__`` goes through an argument tuple on each of a request's captures).
        _capture = span_ids if var is None else _features.SpanIds(var, span_key, span_ids).capture
    return _capture


def _current_context() -> tuple[ContextVar[Any] | None, str | None]:
    """The ContextVar of the current Context and the span's key in it, as OpenTelemetry ships them.

    The default runtime context (``ContextVarsRuntimeContext``) holds the current
    Context in a ContextVar; reading it directly is what ``get_current_span`` does
    through four Python calls. Any other runtime context, or an OpenTelemetry that
    moved these: (None, None), and every capture asks ``get_current_span``.
    """
    try:
        from opentelemetry import context as otel_context
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
        from opentelemetry.trace.propagation import _SPAN_KEY
    except ImportError:
        return None, None
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is not ContextVarsRuntimeContext or not isinstance(var, ContextVar):
        return None, None
    if not isinstance(_SPAN_KEY, str):
        return None, None
    return var, _SPAN_KEY


def apply(metric: Any) -> None:
    """Mark ``metric`` (our ``Histogram`` facade) as carrying trace exemplars if ``PROMETHEUS_EXEMPLARS``.

    A no-op when off, without OpenTelemetry, in multiprocess mode, or for a
    metric that is not ours (a user's ``register_metric`` may return another class).
    """
    if not enabled():
        return
    mark = getattr(metric, "set_exemplar_capture", None)
    if mark is None:
        return
    fn = capture()
    if fn is not None:
        mark(fn)
