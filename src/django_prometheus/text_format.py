"""The text formats' writer: a scrape's bytes in text 0.0.4 or OpenMetrics, for the view and the ports.

The one seam between "which registry, which format, which names" (decided by
``exports``) and "how the text is made" (here; ``protobuf`` writes the other format).
Our own families are written straight from the cells by the core's writer (``_core._expo``); every other
collector in the registry (users' metrics, process/platform/gc collectors,
third-party collectors) is rendered by prometheus_client, in registry order,
so the body is byte for byte ``generate_latest`` of the same registry.
``generate_latest(REGISTRY)`` itself keeps working: our metrics stay ordinary
collectors, this is only the exporters' fast path.

Data flows one way, as in prometheus_client: a collector of ours hands its
cells over (``_expo_family()``) and never calls back into this module, which
imports neither ``metrics`` nor ``multiprocess``.
"""

from __future__ import annotations

import contextvars
import inspect
import re
from collections.abc import Iterable, Sequence
from typing import Any

import prometheus_client
from prometheus_client import metrics as _pc_metrics
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.utils import floatToGoString

from django_prometheus._core import _expo

__all__ = ["render"]

# prometheus_client 0.21 started writing two-digit exponents (1e+10, not 1e+010).
_EXP2 = floatToGoString(1e10) == "1e+10"
_EOF = b"# EOF\n"
_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Escaping schemes (the Accept header's ``escaping=``); prometheus_client names them alike.
UNDERSCORES = "underscores"
DOTS = "dots"
# The schemes under which the core writes prometheus_client Metric objects (``_expo_metrics``)
# as prometheus_client does (its OpenMetrics writer prefixes legacy names under "values").
_METRICS_SCHEMES = frozenset({UNDERSCORES, "allow-utf-8"})
#: False before prometheus_client 0.22 (no UTF-8 names, no escaping): its writers are
#: called without ``escaping``, and only the legacy names they accept can occur.
ESCAPING_SUPPORTED = "escaping" in inspect.signature(prometheus_client.generate_latest).parameters
# The scheme of the render() in progress, for the collectors' fast paths that hand
# prometheus_client metrics back to its writers (_foreign).
_escaping: contextvars.ContextVar[str] = contextvars.ContextVar(
    "django_prometheus_escaping", default=UNDERSCORES
)

#: prometheus_client's metric type (a collector's ``_type``) -> the core writer's kind.
_KINDS = {"counter": _expo.COUNTER, "gauge": _expo.GAUGE, "histogram": _expo.HISTOGRAM}
_SUFFIXES = {
    _expo.COUNTER: ((_expo.VALUE, "_total"), (_expo.CREATED, "_created")),
    _expo.GAUGE: ((_expo.VALUE, ""),),
    _expo.HISTOGRAM: (
        (_expo.BUCKET, "_bucket"),
        (_expo.COUNT, "_count"),
        (_expo.SUM, "_sum"),
        (_expo.CREATED, "_created"),
    ),
}


def render(
    registry: Any,
    openmetrics_format: bool = False,
    names: Sequence[str] | None = None,
    escaping: str = UNDERSCORES,
) -> bytes:
    """``generate_latest`` of ``registry`` (OpenMetrics' when asked), restricted to ``names`` if given.

    ``names`` selects samples by name, as ``?name[]=`` does in prometheus_client
    (``django_http_requests_total_by_method_total``, ``…_bucket``); unlike its
    restricted registry, collectors without ``describe()`` (the multiprocess
    aggregate among them) are filtered too, instead of dropped. ``escaping`` is
    the scheme for names outside the legacy character set (``negotiation``);
    legacy names are written as they are by every scheme but ``dots``.
    """
    token = _escaping.set(escaping)
    try:
        return _render(registry, openmetrics_format, names, escaping)
    finally:
        _escaping.reset(token)


def _render(registry: Any, openmetrics_format: bool, names: Sequence[str] | None, escaping: str) -> bytes:
    wanted = frozenset(names) if names else None
    entries = _collectors(registry)
    if entries is None:  # not a CollectorRegistry: prometheus_client renders it all
        if wanted is not None and hasattr(registry, "restricted_registry"):
            registry = registry.restricted_registry(list(wanted))
        return _foreign(registry, openmetrics_format)
    use_created = _pc_metrics._use_created
    # The core's writer writes names as they are: right for legacy names under every scheme
    # but dots, which escapes "_" too (prometheus_client writes everything then).
    fast_path = escaping != DOTS
    chunks: list[bytes] = []
    pending: list[Any] = []  # consecutive collectors prometheus_client renders in one go
    for collector in entries:
        family = getattr(collector, "_expo_family", None) if fast_path else None
        data = family() if family is not None else None
        out = render_family(*data, openmetrics_format, wanted, use_created) if data is not None else None
        if out is None and escaping in _METRICS_SCHEMES:
            merged = getattr(collector, "_expo_metrics", None)
            if merged is not None:
                out = _render_metrics(merged(), openmetrics_format, wanted)
        if out is None:
            pending.append(collector)
            continue
        if pending:
            chunks.append(_foreign(_Chunk(pending, wanted), openmetrics_format))
            pending = []
        chunks.append(out)
    if pending:
        chunks.append(_foreign(_Chunk(pending, wanted), openmetrics_format))
    if openmetrics_format:
        chunks.append(_EOF)
    return b"".join(chunks)


def _render_metrics(metrics: Iterable[Any], openmetrics_format: bool, wanted: frozenset[str] | None) -> bytes:
    """prometheus_client ``Metric`` objects (the multiprocess merge's) through the core's writer.

    A metric the core's writer does not take (a name outside the legacy set, a sample with a
    timestamp, an exemplar or a native histogram, a type other than counter, gauge,
    histogram or summary) goes to prometheus_client's, in its place.
    """
    chunks = []
    for metric in metrics:
        if wanted is not None:
            metric = metric._restricted_metric(wanted)
            if metric is None:
                continue
        out = None
        if _legacy_names(metric):
            out = _expo.render_metric(
                metric.name, metric.documentation, metric.type, metric.unit, metric.samples,
                openmetrics_format, _EXP2,
            )  # fmt: skip
        chunks.append(out if out is not None else _foreign(_Static([metric]), openmetrics_format))
    return b"".join(chunks)


def _legacy_names(metric: Any) -> bool:
    if not _LEGACY_NAME.match(metric.name):
        return False
    seen: set[str] = set()
    for sample in metric.samples:
        if sample.name not in seen:
            if not _LEGACY_NAME.match(sample.name):
                return False
            seen.add(sample.name)
        for label in sample.labels:
            if label not in seen:
                if not _LEGACY_LABEL.match(label):
                    return False
                seen.add(label)
    return True


def _collectors(registry: Any) -> list[Any] | None:
    """The registry's collectors in its collect() order (target_info first), or None if unknown."""
    by_collector = getattr(registry, "_collector_to_names", None)
    lock = getattr(registry, "_lock", None)
    if not isinstance(by_collector, dict) or lock is None:
        return None
    with lock:
        collectors = list(by_collector)
        target_info = registry._target_info_metric() if getattr(registry, "_target_info", None) else None
    if target_info is not None:
        collectors.insert(0, _Static([target_info]))
    return collectors


class _Static:
    def __init__(self, metrics: list[Any]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Any]:
        return self._metrics


class _Chunk:
    """Collectors handed to prometheus_client's writer, their samples restricted to ``wanted``."""

    def __init__(self, collectors: list[Any], wanted: frozenset[str] | None) -> None:
        self._collectors = collectors
        self._wanted = wanted

    def collect(self) -> Iterable[Any]:
        wanted = self._wanted
        for collector in self._collectors:
            for metric in collector.collect():
                if wanted is None:
                    yield metric
                else:
                    restricted = metric._restricted_metric(wanted)
                    if restricted is not None:
                        yield restricted


def _foreign(registry: Any, openmetrics_format: bool) -> bytes:
    """prometheus_client's writer, with the escaping of the render() in progress."""
    kwargs = {"escaping": _escaping.get()} if ESCAPING_SUPPORTED else {}
    if not openmetrics_format:
        return prometheus_client.generate_latest(registry, **kwargs)
    out = openmetrics.generate_latest(registry, **kwargs)
    return out[: -len(_EOF)] if out.endswith(_EOF) else out


def render_family(
    typ: str,
    name: str,
    doc: str,
    unit: str,
    labelnames: Sequence[str],
    children: Sequence[tuple[tuple[str, ...], Any]],
    les: Sequence[str],
    with_sum: bool,
    openmetrics_format: bool,
    wanted: frozenset[str] | None,
    use_created: bool,
) -> bytes | None:
    """One of our families through the core's writer; None when only prometheus_client can write it.

    The arguments before ``openmetrics_format`` are what a collector's ``_expo_family()``
    hands over: its type (``"counter"``, ``"gauge"``, ``"histogram"``), name, help, unit,
    label names, ``(label values, cell)`` children, the ``le`` texts and whether a
    histogram has a ``_sum``.
    """
    if not _LEGACY_NAME.match(name) or not all(_LEGACY_LABEL.match(n) for n in labelnames):
        return None  # UTF-8 names: prometheus_client's escaping rules apply
    kind = _KINDS[typ]
    mask = 0
    for bit, suffix in _SUFFIXES[kind]:
        if bit == _expo.CREATED and not use_created or bit == _expo.SUM and not with_sum:
            continue
        if wanted is None or name + suffix in wanted:
            mask |= bit
    if wanted is not None and not mask:
        return b""
    return _expo.render_family(
        kind, name, doc, unit, tuple(labelnames), children, les, mask,
        openmetrics_format, wanted is not None, _EXP2,
    )  # fmt: skip
