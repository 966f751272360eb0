"""The protobuf exposition: varint-delimited ``io.prometheus.client.MetricFamily`` messages.

What Prometheus asks for when it wants native histograms (it ingests them from
this format only). Written by hand, no runtime dependency: the wire format of
client_model's ``metrics.proto`` is small (varints, doubles, length-delimited
messages). Our own families are written straight from the cells by the core's
compiled writer (``_core._expo.render_protobuf``; with the pure core, here, the
histograms' bodies by ``_core._native.encode_histogram``), the native part
included when a cell has one; every other collector is written from
its ``collect()``, mapped as prometheus_client maps it for the text format
(counter -> ``<name>_total``, info -> gauge ``<name>_info``, stateset and enum ->
gauge, unknown -> untyped), with ``_created`` samples as created timestamps.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import metrics as _pc_metrics

from django_prometheus import negotiation, text_format
from django_prometheus._core import _expo, _native

__all__ = ["CONTENT_TYPE", "answer", "render", "render_metrics", "wants_protobuf"]

#: The Content-Type of a protobuf answer (Prometheus' and client_golang's spelling).
CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"


# io.prometheus.client.MetricType
COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = range(6)
_TYPES = {
    "counter": COUNTER,
    "gauge": GAUGE,
    "summary": SUMMARY,
    "untyped": UNTYPED,
    "unknown": UNTYPED,
    "histogram": HISTOGRAM,
    "gaugehistogram": GAUGE_HISTOGRAM,
    "info": GAUGE,
    "stateset": GAUGE,
}
_DOUBLE = struct.Struct("<d")
_INF = math.inf
_HISTOGRAM_PARTS = {
    "_count": "count", "_sum": "sum", "_gcount": "count", "_gsum": "sum", "_created": "created",
}  # fmt: skip
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def wants_protobuf(accept: str | None) -> bool:
    """True when ``Accept`` ranks the delimited MetricFamily protobuf highest of the formats we write.

    ``negotiation.choose``'s rules (one parser for every format): only
    ``proto=io.prometheus.client.MetricFamily`` with ``encoding=delimited`` counts,
    the highest ``q`` wins, a tie goes to the first named (a wildcard loses it),
    and a malformed element is skipped (the text format is the fallback, never
    an error).
    """
    return negotiation.choose(accept, protobuf=True).kind == negotiation.PROTOBUF


def answer(registry: Any, accept: str | None, names: Sequence[str] | None) -> tuple[bytes, str] | None:
    """``(body, Content-Type)`` of the protobuf exposition when ``Accept`` ranks it highest, else None."""
    if not wants_protobuf(accept):
        return None
    return render(registry, names or None), CONTENT_TYPE


# --- wire format ----------------------------------------------------------------


_SMALL = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _string(field: int, text: str) -> bytes:
    return _ld(field, text.encode("utf-8", "surrogatepass"))


def _double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + _DOUBLE.pack(value)


def _uint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _timestamp(seconds: float) -> bytes:
    """A google.protobuf.Timestamp message body."""
    whole = math.floor(seconds)
    nanos = min(int(round((seconds - whole) * 1e9)), 999_999_999)
    out = b""
    if whole:
        out += _uint(1, whole)
    if nanos:
        out += _uint(2, nanos)
    return out


def _labels(pairs: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(_ld(1, _string(1, k) + _string(2, v)) for k, v in pairs)


def _exemplar(labels: dict[str, str], value: float, timestamp: float | None) -> bytes:
    out = b"".join(_ld(1, _string(1, k) + _string(2, v)) for k, v in labels.items()) + _double(2, value)
    if timestamp is not None:
        out += _ld(3, _timestamp(timestamp))
    return out


def _sample_exemplar(e: Any) -> bytes:
    return _exemplar(e.labels, e.value, None if e.timestamp is None else float(e.timestamp))


def _family(name: str, doc: str, mtype: int, metrics: Sequence[bytes], unit: str = "") -> bytes:
    body = _string(1, name) + _string(2, doc) + _uint(3, mtype) + b"".join(_ld(4, m) for m in metrics)
    if unit:
        body += _string(5, unit)
    return _varint(len(body)) + body


def _count(value: float) -> int:
    return int(value) if value == value and 0 <= value < 2**64 else 0


# --- the registry ---------------------------------------------------------------


def render(registry: Any, names: Sequence[str] | None = None) -> bytes:
    """Every family of ``registry`` as delimited MetricFamily messages, restricted to ``names`` if given.

    ``names`` are sample names, as for the text format (``?name[]=``): a family is
    written whole when any of its samples is named (a protobuf family cannot be cut
    into samples).
    """
    from django_prometheus import metrics as ours  # (imported late: metrics needs the exporters' modules)

    wanted = frozenset(names) if names else None
    use_created = _pc_metrics._use_created
    chunks: list[bytes] = []
    for collector in _collectors(registry):
        out = _ours(ours, collector, wanted, use_created) if isinstance(collector, ours._CellBacked) else None
        if out is None:
            out = render_metrics(collector.collect(), wanted)
        chunks.append(out)
    return b"".join(chunks)


def _collectors(registry: Any) -> list[Any]:
    # The text writer's walk of the registry (target_info first); anything else has collect().
    found = text_format._collectors(registry)
    return [registry] if found is None else found


def _ours(ours: Any, collector: Any, wanted: frozenset[str] | None, use_created: bool) -> bytes | None:
    """One of our cell-backed families, from the cells; None when only collect() can tell."""
    cls, base = type(collector), collector._expo_base
    if cls.collect is not base.collect or cls._add_samples is not base._add_samples:
        return None  # a subclass changed what is collected: collect() is the truth
    if "_child_samples" in collector.__dict__:  # Gauge.set_function()
        return None
    name = collector._name
    if collector._family is not None:
        family: Any = collector._family
    elif collector._cell is not None:
        family = [((), collector._cell)]
    else:
        family = []
    labelnames = collector._labelnames
    if isinstance(collector, ours.Counter):
        full = name + "_total"
        if wanted is not None and not ({full, name + "_created"} & wanted):
            return b""
        out = _expo.render_protobuf(
            _expo.COUNTER, name, collector._documentation, collector._unit, labelnames, family, (),
            False, use_created, None,
        )  # fmt: skip
        if out is not None:
            return out
        children = _children(family)
        metrics = []
        for values, cell in children:
            body = _double(1, cell.get())
            if use_created:
                body += _ld(3, _timestamp(cell.created))
            metrics.append(_metric(labelnames, values, 3, body))
        return _family(full, collector._documentation, COUNTER, metrics, collector._unit)
    if isinstance(collector, ours.Histogram):
        if wanted is not None and not ({name + s for s in _HISTOGRAM_SUFFIXES} & wanted):
            return b""
        bounds = tuple(collector._upper_bounds)
        with_sum = bounds[0] >= 0
        encode = _native.encode_histogram
        cache = _child_cache(collector, len(collector._family) if collector._family is not None else 1)

        def child(values: tuple[str, ...], cell: Any) -> bytes:
            labels, created = _child_bytes(cache, labelnames, values, cell)
            ex = cell.exemplars()
            encoded_ex = [None if e is None else _exemplar(e[0], e[1], e[2]) for e in ex] if ex else None
            # The count is the +Inf bucket of the same read: under load, a separate read of
            # cell.count could fall below a bucket read after it.
            buckets = cell.buckets()
            body = encode(
                buckets[-1], cell.sum if with_sum else None, bounds, buckets, encoded_ex,
                cell.native, created if use_created else None,
            )  # fmt: skip
            return labels + _ld(7, body)

        out = _expo.render_protobuf(
            _expo.HISTOGRAM, name, collector._documentation, collector._unit, labelnames, family, bounds,
            with_sum, use_created, child,
        )  # fmt: skip
        if out is not None:
            return out
        metrics = [child(values, cell) for values, cell in _children(family)]
        return _family(name, collector._documentation, HISTOGRAM, metrics, collector._unit)
    if isinstance(collector, ours.Gauge):
        if wanted is not None and name not in wanted:
            return b""
        out = _expo.render_protobuf(
            _expo.GAUGE, name, collector._documentation, collector._unit, labelnames, family, (),
            False, False, None,
        )  # fmt: skip
        if out is not None:
            return out
        metrics = [
            _metric(labelnames, values, 2, _double(1, cell.get())) for values, cell in _children(family)
        ]
        return _family(name, collector._documentation, GAUGE, metrics, collector._unit)
    return None


def _children(family: Any) -> list[tuple[tuple[str, ...], Any]]:
    return family.children() if hasattr(family, "children") else list(family)


def _child_cache(collector: Any, n: int) -> dict[tuple[str, ...], tuple[Any, bytes, bytes]]:
    """Per family: each child's encoded labels and created timestamp, which never change."""
    cache = collector.__dict__.get("_protobuf_children")
    if cache is None or len(cache) > 2 * n + 64:  # removed children: start over
        cache = collector.__dict__["_protobuf_children"] = {}
    return cache


def _child_bytes(
    cache: dict, labelnames: Sequence[str], values: tuple[str, ...], cell: Any
) -> tuple[bytes, bytes]:
    entry = cache.get(values)
    if entry is None or entry[0] is not cell:  # new, or removed and created again
        entry = cache[values] = (
            cell,
            _labels(zip(labelnames, values, strict=True)),
            _timestamp(cell.created),
        )
    return entry[1], entry[2]


def _metric(labelnames: Sequence[str], values: Sequence[str], field: int, body: bytes) -> bytes:
    return _labels(zip(labelnames, values, strict=True)) + _ld(field, body)


def render_metrics(metrics: Iterable[Any], wanted: frozenset[str] | None = None) -> bytes:
    """prometheus_client metric families (``collect()``'s) as delimited MetricFamily messages."""
    out = []
    for metric in metrics:
        if wanted is not None and not any(s.name in wanted for s in metric.samples):
            continue
        out.append(_encode(metric))
    return b"".join(out)


def _encode(metric: Any) -> bytes:
    """One prometheus_client Metric, mapped as its text exposition maps it."""
    name, mtype = metric.name, metric.type
    ptype = _TYPES.get(mtype, UNTYPED)
    family = name + "_total" if mtype == "counter" else name + "_info" if mtype == "info" else name
    groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    strays: list[Any] = []  # samples whose name the type does not explain: untyped families of their own

    def group(sample: Any, drop: str | None = None) -> dict[str, Any]:
        labels = tuple((k, v) for k, v in sample.labels.items() if k != drop)
        g = groups.get(labels)
        if g is None:
            g = groups[labels] = {"buckets": [], "quantiles": [], "timestamp": sample.timestamp}
        return g

    for s in metric.samples:
        suffix = s.name[len(name) :] if s.name.startswith(name) else None
        if mtype == "counter" and suffix in ("_total", "_created"):
            group(s)["created" if suffix == "_created" else "value"] = s
        elif mtype in ("histogram", "gaugehistogram") and suffix == "_bucket" and "le" in s.labels:
            group(s, "le")["buckets"].append(s)
        elif mtype in ("histogram", "gaugehistogram") and suffix in _HISTOGRAM_PARTS:
            group(s)[_HISTOGRAM_PARTS[suffix]] = s
        elif mtype == "summary" and suffix == "" and "quantile" in s.labels:
            group(s, "quantile")["quantiles"].append(s)
        elif mtype == "summary" and suffix in ("_count", "_sum", "_created"):
            group(s)[suffix[1:]] = s
        elif mtype in ("gauge", "stateset", "unknown", "untyped") and suffix == "":
            group(s)["value"] = s
        elif mtype == "info" and suffix == "_info":
            group(s)["value"] = s
        else:
            strays.append(s)
    bodies = []
    # Multiprocess aggregates: the children's merged native parts (``multiprocess.native_states``).
    native_states = getattr(metric, "_native_states", None)
    for labels, g in groups.items():
        head = _labels(labels)
        if g["timestamp"] is not None:
            tail = _varint(6 << 3) + _varint(int(float(g["timestamp"]) * 1000))
        else:
            tail = b""
        if ptype == COUNTER:
            v = g.get("value")
            body = _double(1, v.value if v is not None else 0.0)
            if v is not None and v.exemplar is not None:
                body += _ld(2, _sample_exemplar(v.exemplar))
            if "created" in g:
                body += _ld(3, _timestamp(g["created"].value))
            bodies.append(head + _ld(3, body) + tail)
        elif ptype in (HISTOGRAM, GAUGE_HISTOGRAM):
            buckets = sorted(g["buckets"], key=lambda s: float(s.labels["le"]))
            bounds = [float(s.labels["le"]) for s in buckets]
            cumulative = [s.value for s in buckets]
            count = g["count"].value if "count" in g else (cumulative[-1] if cumulative else 0.0)
            exemplars = [None if s.exemplar is None else _sample_exemplar(s.exemplar) for s in buckets]
            native = native_states.get(tuple(sorted(labels))) if native_states else None
            body = _histogram(
                count, g["sum"].value if "sum" in g else None, bounds, cumulative, exemplars, native
            )
            if "created" in g:
                body += _ld(15, _timestamp(g["created"].value))
            bodies.append(head + _ld(7, body) + tail)
        elif ptype == SUMMARY:
            body = _uint(1, _count(g["count"].value)) if "count" in g else b""
            if "sum" in g:
                body += _double(2, g["sum"].value)
            for q in g["quantiles"]:
                body += _ld(3, _double(1, float(q.labels["quantile"])) + _double(2, q.value))
            if "created" in g:
                body += _ld(4, _timestamp(g["created"].value))
            bodies.append(head + _ld(4, body) + tail)
        else:
            v = g.get("value")
            field = 2 if ptype == GAUGE else 5
            bodies.append(head + _ld(field, _double(1, v.value if v is not None else 0.0)) + tail)
    unit = getattr(metric, "unit", "") or ""
    out = [_family(family, metric.documentation, ptype, bodies, unit)] if groups else []
    for s in strays:
        body = _labels(s.labels.items()) + _ld(5, _double(1, s.value))
        out.append(_family(s.name, metric.documentation, UNTYPED, [body]))
    return b"".join(out)


def _histogram(
    count: float,
    total: float | None,
    bounds: list[float],
    cumulative: list[float],
    exemplars: list[Any],
    native: tuple | None = None,
) -> bytes:
    """A Histogram body from samples, whose counts may be fractional (then the *_float fields).

    ``native``: None or a native part's state, written next to whole counts.
    """
    if all(c == int(c) for c in [count, *cumulative] if c == c and abs(c) != _INF):
        return _native.encode_histogram(count, total, bounds, cumulative, exemplars, native, None)
    out = _double(4, count)
    if total is not None:
        out += _double(2, total)
    for bound, c, ex in zip(bounds, cumulative, exemplars, strict=True):
        if bound == _INF:
            continue
        bucket = _double(4, c) + _double(2, bound)
        if ex is not None:
            bucket += _ld(3, ex)
        out += _ld(3, bucket)
    return out
