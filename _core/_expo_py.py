"""Pure-Python twin of the compiled exposition writer (``_expo_c.pyx``): same API, same bytes.

One call renders one metric family straight from its cells, in the Prometheus
text format 0.0.4 or OpenMetrics 1.0, byte for byte what prometheus_client's
``generate_latest`` makes of the same family: label values escaped (``\\``,
``"``, newline), labels sorted by name, floats in Go's notation, ``_created``
samples as a gauge family of their own in the text format and inline in
OpenMetrics. The caller decides which samples to keep (``mask``) and passes
the family's shape; this module reads only the cells' public API.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BUCKET",
    "COUNT",
    "COUNTER",
    "CREATED",
    "GAUGE",
    "HISTOGRAM",
    "SUM",
    "VALUE",
    "format_float",
    "read_used",
    "render_family",
    "render_metric",
    "render_protobuf",
    "scan",
]

# Family kinds.
COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
# Sample kinds, for ``mask``: the counter's ``_total``/the gauge's value, then the histogram's.
VALUE, BUCKET, COUNT, SUM, CREATED = 1, 2, 4, 8, 16

_INF = float("inf")


def format_float(d: float, exp2: bool = True) -> str:
    """prometheus_client's ``floatToGoString``; ``exp2``: two-digit exponents (its releases from 0.21 on)."""
    d = float(d)
    if d == _INF:
        return "+Inf"
    if d == -_INF:
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}" if exp2 else f"{mantissa}e+0{dot - 1}"
    return s


def _escape(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return v


def _exemplar(exemplar: tuple[dict[str, str], float, float], exp2: bool) -> str:
    """`` # {a="x",b="y"} value timestamp``: sorted labels, timestamp in repr(), as prometheus_client."""
    labels, value, timestamp = exemplar
    parts = ",".join(f'{k}="{_escape(str(labels[k]))}"' for k in sorted(labels))
    return f" # {{{parts}}} {format_float(value, exp2)} {timestamp!r}"


def render_family(
    kind: int,
    name: str,
    doc: str,
    unit: str,
    labelnames: Sequence[str],
    children: Any,
    les: Sequence[str],
    mask: int,
    openmetrics: bool,
    filtered: bool,
    exp2: bool = True,
) -> bytes:
    """The exposition of one family.

    ``children``: (label values, cell) pairs, label values in ``labelnames``
    order, or a core ``Family`` (its ``children()``; the compiled writer keeps
    what it prepares for them in the family's ``render_cache``). ``les``: a
    histogram's bucket bounds as ``le`` strings. ``mask``: the sample kinds
    to write (``CREATED`` only if created series are on; ``SUM`` only if the
    histogram has no negative bound). ``filtered``: the scrape asked for
    names (``name[]``), so a family left without samples writes nothing at
    all, as prometheus_client's restricted registry does.
    """
    order = sorted(range(len(labelnames)), key=lambda i: labelnames[i])
    sorted_names = [labelnames[i] for i in order]
    le_pos = sum(1 for n in sorted_names if n < "le")
    lines: list[str] = []
    created: list[str] = []
    nsamples = 0
    fmt = format_float
    if hasattr(children, "render_cache"):
        children = children.children()
    for values, cell in children:
        parts = [f'{sorted_names[j]}="{_escape(values[i])}"' for j, i in enumerate(order)]
        labels = "{" + ",".join(parts) + "}" if parts else ""
        if kind == HISTOGRAM:
            before = "".join(p + "," for p in parts[:le_pos])
            after = "".join("," + p for p in parts[le_pos:])
            buckets = cell.buckets()
            # Exemplars exist only in OpenMetrics (the text format has no syntax for them).
            exemplars = cell.exemplars() if openmetrics else None
            if mask & BUCKET:
                for i, (le, acc) in enumerate(zip(les, buckets, strict=True)):
                    ex = "" if exemplars is None or exemplars[i] is None else _exemplar(exemplars[i], exp2)
                    lines.append(f'{name}_bucket{{{before}le="{le}"{after}}} {fmt(acc, exp2)}{ex}\n')
                nsamples += len(les)
            if mask & COUNT:
                lines.append(f"{name}_count{labels} {fmt(buckets[-1] if buckets else 0.0, exp2)}\n")
                nsamples += 1
            if mask & SUM:
                lines.append(f"{name}_sum{labels} {fmt(cell.sum, exp2)}\n")
                nsamples += 1
        elif mask & VALUE:
            sample = name + "_total" if kind == COUNTER else name
            lines.append(f"{sample}{labels} {fmt(cell.get(), exp2)}\n")
            nsamples += 1
        if mask & CREATED and kind != GAUGE:
            line = f"{name}_created{labels} {fmt(cell.created, exp2)}\n"
            (lines if openmetrics else created).append(line)
            nsamples += 1
    if filtered and not nsamples:
        return b""
    typ = ("counter", "gauge", "histogram")[kind]
    if openmetrics:
        help_text = doc.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        head = f"# HELP {name} {help_text}\n# TYPE {name} {typ}\n"
        if unit and not filtered:
            head += f"# UNIT {name} {unit}\n"
        return (head + "".join(lines)).encode()
    help_text = doc.replace("\\", "\\\\").replace("\n", "\\n")
    mname = name + "_total" if kind == COUNTER else name
    out = [f"# HELP {mname} {help_text}\n# TYPE {mname} {typ}\n", *lines]
    if created:
        out.append(f"# HELP {name}_created {help_text}\n# TYPE {name}_created gauge\n")
        out.extend(created)
    return "".join(out).encode()


_METRIC_TYPES = ("counter", "gauge", "histogram", "summary")
_MOVED = ("_created", "_gcount", "_gsum")  # the text format writes these as gauge families of their own


def render_metric(
    name: str, doc: str, typ: str, unit: str, samples: Sequence[Any], openmetrics: bool, exp2: bool = True
) -> bytes | None:
    """One prometheus_client ``Metric`` (name, help, type, unit, samples) as ``generate_latest`` writes it.

    For families made from samples, as the multiprocess merge makes them: a
    counter, gauge, histogram or summary whose samples carry no timestamp,
    exemplar or native histogram. The caller checks that every name is a
    legacy one; None: anything else, which prometheus_client writes.
    """
    if typ not in _METRIC_TYPES:
        return None
    lines: list[str] = []
    moved: dict[str, list[str]] = {}
    for s in samples:
        if s.timestamp is not None or s.exemplar is not None or getattr(s, "native_histogram", None):
            return None
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
        line = (
            f"{s.name}{{{labels}}} {format_float(s.value, exp2)}\n"
            if labels
            else (f"{s.name} {format_float(s.value, exp2)}\n")
        )
        suffix = s.name[len(name) :] if not openmetrics and s.name.startswith(name) else ""
        if suffix in _MOVED:
            moved.setdefault(suffix, []).append(line)
        else:
            lines.append(line)
    if openmetrics:
        help_text = doc.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        head = f"# HELP {name} {help_text}\n# TYPE {name} {typ}\n"
        if unit:
            head += f"# UNIT {name} {unit}\n"
        return (head + "".join(lines)).encode()
    help_text = doc.replace("\\", "\\\\").replace("\n", "\\n")
    mname = name + "_total" if typ == "counter" else name
    out = [f"# HELP {mname} {help_text}\n# TYPE {mname} {typ}\n", *lines]
    for suffix, extra in sorted(moved.items()):
        out.append(f"# HELP {name}{suffix} {help_text}\n# TYPE {name}{suffix} gauge\n")
        out.extend(extra)
    return "".join(out).encode()


def render_protobuf(
    kind: int,
    name: str,
    doc: str,
    unit: str,
    labelnames: Sequence[str],
    children: Any,
    bounds: Sequence[float],
    with_sum: bool,
    use_created: bool,
    slow: Callable[[tuple[str, ...], Any], bytes],
) -> bytes | None:
    """One family as a delimited ``io.prometheus.client.MetricFamily`` message, or None.

    None: the caller (``django_prometheus.protobuf``) encodes the family itself,
    as it always does here; the compiled writer makes the same bytes from the
    cells (``slow(values, cell)`` encoding the Metric of a histogram child
    with a native part or exemplars), and returns None only on big-endian hosts.
    """
    return None


# --- Reading multiprocess files -----------------------------------------------
#
# prometheus_client's format (``mmap_dict.py``): a 4-byte "bytes used" header,
# 4 bytes of padding, then entries of (4-byte key length, UTF-8 key padded to
# 8-byte alignment, value double, timestamp double).

_HEAD = struct.Struct("i")
_TWO_DOUBLES = struct.Struct("dd")


def read_used(path: str) -> bytes | None:
    """The used part of one file, or None if it is gone."""
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
            if len(data) < 8:
                return b""
            used = _HEAD.unpack_from(data, 0)[0]
            if used > len(data):
                data += f.read(used - len(data))
    except FileNotFoundError:
        return None
    return data[: max(used, 8)]


def scan(
    paths: Sequence[str], gauge: Sequence[bool], resolve: Callable[[str, int], int]
) -> tuple[list[float], list[tuple[int, int, float, float]]]:
    """Sum every file's values per target, in file order then entry order.

    ``resolve(key, file_index)`` is called once per distinct key and kind of
    file (gauge or not) and returns the key's target. Values in a non-gauge
    file are added to ``sums[target]`` (the same additions, in the same order,
    as prometheus_client's collector makes); a gauge file's entries are
    returned as (target, file_index, value, timestamp) for the caller to
    combine per ``multiprocess_mode``. Files that vanished are skipped.
    """
    sums: list[float] = []
    gauges: list[tuple[int, int, float, float]] = []
    known: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
    for index, path in enumerate(paths):
        data = read_used(path)
        if data is None:
            continue
        is_gauge = bool(gauge[index])
        cache = known[is_gauge]
        used = _HEAD.unpack_from(data, 0)[0] if len(data) >= 8 else 0
        pos = 8
        while pos < used:
            n = _HEAD.unpack_from(data, pos)[0]
            if n < 0 or n + pos > used:
                raise RuntimeError("Read beyond file size detected, file is corrupted.")
            key = data[pos + 4 : pos + 4 + n]
            pos += 4 + n + (8 - (n + 4) % 8)
            value, timestamp = _TWO_DOUBLES.unpack_from(data, pos)
            pos += 16
            target = cache.get(key)
            if target is None:
                target = cache[key] = resolve(key.decode("utf-8"), index)
            if is_gauge:
                gauges.append((target, index, value, timestamp))
            else:
                while target >= len(sums):
                    sums.append(0.0)
                sums[target] += value
    return sums, gauges
