"""Pure-Python twin of ``_native_c.pyx``: native (sparse exponential) histograms, protobuf bytes.

Keep the two files in step: every public name and every behaviour here has its
counterpart there, and the test suite runs against both.

A native histogram has a ``schema`` (-4..8): bucket ``i`` covers
``(base**(i-1), base**i]`` with ``base = 2**(2**-schema)``; values with
``abs(v) <= zero_threshold`` are counted in the zero bucket; positive and
negative values have buckets of their own. The rules are client_golang's
(1.14, with the negative-schema key fix of client_golang#1279), so the same
observations give the same buckets: the key comes from ``math.frexp`` and
client_golang's boundary table (``_native_bounds``), infinities go one bucket
past the largest float's, NaN is not counted, and when an observation leaves
more populated buckets than ``max_buckets`` (0: no limit) the resolution halves
once (schema - 1, neighbouring buckets merged), down to schema -4.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from ._native_bounds import BOUNDS

__all__ = [
    "MAX_SCHEMA",
    "MIN_SCHEMA",
    "NativeHistogram",
    "encode_histogram",
    "merge_states",
    "pick_schema",
    "spans_and_deltas",
]

MIN_SCHEMA = -4
MAX_SCHEMA = 8
#: Stripes a contended part spreads over (the compiled core on a free-threaded build only:
#: this twin takes a lock per observation and never stripes).
STRIPES = 0
_DBL_MAX = sys.float_info.max
_INF = math.inf
_LN2_INV = 1 / math.log(2)


def _go_log2(x: float) -> float:
    # Go's math.Log2 (frexp, then a natural log of the fraction): pick_schema must land
    # on client_golang's schema at the edges, where log2 implementations can disagree.
    frac, exp = math.frexp(x)
    if frac == 0.5:
        return float(exp - 1)
    return math.log(frac) * _LN2_INV + exp


def pick_schema(factor: float) -> int:
    """The lowest schema whose growth factor ``2**(2**-schema)`` does not exceed ``factor``.

    Within -4..8 (client_golang's ``pickSchema``): 1.1 gives 3, 2 gives 0, a factor
    below 2**(2**-8) still gives 8. ``factor <= 1`` (or NaN) is a ValueError.
    """
    factor = float(factor)
    if not factor > 1:
        raise ValueError(f"native histogram bucket factor must be > 1, not {factor!r}")
    if factor == _INF:
        return MIN_SCHEMA
    floor = math.floor(_go_log2(_go_log2(factor)))
    if floor <= -MAX_SCHEMA:
        return MAX_SCHEMA
    if floor >= -MIN_SCHEMA:
        return MIN_SCHEMA
    return -floor


def _key(v: float, schema: int) -> int:
    """The bucket key of ``v`` (> 0, not NaN) at ``schema``."""
    inf = v == _INF
    if inf:  # one bucket past the largest float's
        v = _DBL_MAX
    frac, exp = math.frexp(v)
    if schema > 0:
        key = bisect_left(BOUNDS[schema], frac) + (exp - 1) * (1 << schema)
    else:
        key = exp - 1 if frac == 0.5 else exp
        shift = -schema
        key = (key + (1 << shift) - 1) >> shift  # a floor shift: ceil(key / 2**shift)
    return key + 1 if inf else key


# A side's populated buckets, as the compiled part keeps them: keys ascending in one list, each
# key's count at the same index in another, and the keys list ends with _END (above every key),
# so the key at bisect_left's index can be read without a length check. Not a dict keyed by
# bucket: on 3.13t a dict read whose stored key another thread made falls back to the dict's
# lock on every observation (48 us an observation off the creating thread, 270 us with two
# threads, against 3 us on it); a list read does not.
_END = 1 << 62  # above any key (|key| < 2**20)


def _side() -> tuple[list[int], list[int]]:
    """An empty side: (keys ending with _END, counts)."""
    return [_END], []


def _items(keys: list[int], counts: list[int]) -> list[tuple[int, int]]:
    """A side's populated buckets as ``(key, count)``, by increasing key."""
    return list(zip(keys, counts, strict=False))  # counts is one shorter: _END is left out


def _halve(keys: list[int], counts: list[int]) -> tuple[list[int], list[int]]:
    out_keys: list[int] = []
    out_counts: list[int] = []
    for key, count in zip(keys, counts, strict=False):  # counts is one shorter: _END is left out
        # ceil(key / 2): bucket key at schema s lies inside bucket ceil(key/2) at s - 1;
        # ascending keys stay ascending, and neighbours that meet are added.
        k = -((-key) // 2)
        if out_keys and out_keys[-1] == k:
            out_counts[-1] += count
        else:
            out_keys.append(k)
            out_counts.append(count)
    out_keys.append(_END)
    return out_keys, out_counts


def _check_config(schema: int, zero_threshold: float, max_buckets: int) -> tuple[int, float, int]:
    if type(schema) is not int or not MIN_SCHEMA <= schema <= MAX_SCHEMA:
        raise ValueError(f"native histogram schema must be an int in -4..8, not {schema!r}")
    zero_threshold = float(zero_threshold)
    if not zero_threshold >= 0 or zero_threshold == _INF:
        raise ValueError(f"native histogram zero threshold must be >= 0 and finite, not {zero_threshold!r}")
    if type(max_buckets) is not int or max_buckets < 0 or max_buckets > 0x7FFFFFFF:
        raise ValueError(f"native histogram max buckets must be an int >= 0, not {max_buckets!r}")
    return schema, zero_threshold, max_buckets


class NativeHistogram:
    """Zero count and sparse bucket counts by key, on both sides of zero."""

    __slots__ = (
        "_files", "_lock", "_marked", "_max", "_nc", "_nk", "_pc", "_pk", "_prefix", "_schema", "_slots",
        "_zero", "_zt",
    )  # fmt: skip

    def __init__(self, schema: int, zero_threshold: float, max_buckets: int) -> None:
        self._schema, self._zt, self._max = _check_config(schema, zero_threshold, max_buckets)
        self._zero = 0
        # Positive and negative buckets: keys ascending (_pk, _nk), their counts (_pc, _nc).
        self._pk, self._pc = _side()
        self._nk, self._nc = _side()
        self._lock = threading.Lock()
        # Multiprocess mode (``attach``): this process' native file, and where each entry is.
        self._files: Any = None
        self._prefix = ""
        self._slots: dict[tuple[str, int, int], tuple[Any, int] | None] = {}
        self._marked: int | None = None

    def observe(self, amount: float) -> None:
        v = float(amount)
        if v != v:  # NaN: in no bucket (client_golang skips it too)
            return
        with self._lock:
            schema = self._schema
            if v > self._zt:
                # _key(v, schema), inlined: positive values (latencies, sizes) are the hot path
                if v == _INF:
                    key = _key(v, schema)
                else:
                    frac, exp = math.frexp(v)
                    if schema > 0:
                        key = bisect_left(BOUNDS[schema], frac) + (exp - 1) * (1 << schema)
                    else:
                        key = exp - 1 if frac == 0.5 else exp
                        key = (key + (1 << -schema) - 1) >> -schema
                keys = self._pk
                i = bisect_left(keys, key)
                if keys[i] == key:
                    self._pc[i] += 1
                else:
                    keys.insert(i, key)
                    self._pc.insert(i, 1)
                kind = "p"
            elif v < -self._zt:
                key = _key(-v, schema)
                keys = self._nk
                i = bisect_left(keys, key)
                if keys[i] == key:
                    self._nc[i] += 1
                else:
                    keys.insert(i, key)
                    self._nc.insert(i, 1)
                kind = "n"
            else:
                self._zero += 1
                key, kind = 0, "z"
            if self._files is not None:  # the one branch multiprocess mode costs when off
                self._write(kind, schema, key)
            # After every observation, zero bucket included, and once: a histogram still too
            # wide after halving halves again on the next one (client_golang's limitBuckets).
            if self._max and len(self._pc) + len(self._nc) > self._max and self._schema > MIN_SCHEMA:
                self._schema -= 1
                self._pk, self._pc = _halve(self._pk, self._pc)
                self._nk, self._nc = _halve(self._nk, self._nc)
                if self._files is not None:
                    self._mark()

    # --- multiprocess mode (``_native_files``) -------------------------------------

    def attach(self, files: Any, prefix: str) -> None:
        """Write every observation through to ``files`` (a ``NativeFiles``), under keys starting ``prefix``.

        The entries show now (an empty part, as the store's cells show their zeros).
        """
        with self._lock:
            self._files, self._prefix, self._slots = files, prefix, {}
            files.track(self)
            self._mark()

    def _entry(self, kind: str, a: int, b: int) -> tuple[Any, int] | None:
        slot = self._slots.get((kind, a, b), _NO_SLOT)
        if slot is _NO_SLOT:
            first = json.dumps(self._zt) if kind == "z" else str(a)
            slot = self._slots[kind, a, b] = self._files.slot(f'{self._prefix}"{kind}", {first}, {b}]')
        return slot  # type: ignore[return-value]

    def _mark(self) -> None:
        # This process' part was at this schema (the reader's lowest), and the zero entry
        # carries the zero threshold.
        self._marked = self._schema
        for kind, a, value in (("m", self._schema, 1.0), ("z", 0, None)):
            slot = self._entry(kind, a, 0)
            if slot is not None and value is not None:
                _VALUE.pack_into(slot[0], slot[1], value)

    def _write(self, kind: str, schema: int, key: int) -> None:
        try:
            if self._marked != schema:
                self._mark()
            slot = self._entry(kind, 0 if kind == "z" else schema, key)
            if slot is not None:
                m, pos = slot
                _VALUE.pack_into(m, pos, _VALUE.unpack_from(m, pos)[0] + 1.0)
        except Exception:  # instrumentation never breaks the app: the observation stays in process
            pass

    def _forked(self) -> None:
        # A forked child: the parent's counts stay the parent's; ours start at 0, in files of our own.
        self._lock = threading.Lock()
        self._zero = 0
        self._pk, self._pc = _side()
        self._nk, self._nc = _side()
        self._slots = {}
        self._marked = None

    @property
    def schema(self) -> int:
        return self._schema

    @property
    def zero_threshold(self) -> float:
        return self._zt

    @property
    def max_buckets(self) -> int:
        return self._max

    @property
    def zero_count(self) -> int:
        return self._zero

    @property
    def count(self) -> int:
        """Observations counted (NaN is not)."""
        with self._lock:
            return self._zero + sum(self._pc) + sum(self._nc)

    def positive(self) -> list[tuple[int, int]]:
        """Populated positive buckets: ``(key, count)`` by increasing key."""
        with self._lock:
            return _items(self._pk, self._pc)

    def negative(self) -> list[tuple[int, int]]:
        """Populated negative buckets (key of ``abs(v)``): ``(key, count)`` by increasing key."""
        with self._lock:
            return _items(self._nk, self._nc)

    def state(self) -> tuple[int, float, int, list[tuple[int, int]], list[tuple[int, int]]]:
        """``(schema, zero_threshold, zero_count, positive, negative)``, read at one instant."""
        with self._lock:
            pos = _items(self._pk, self._pc)
            return self._schema, self._zt, self._zero, pos, _items(self._nk, self._nc)

    def _stripe(self) -> bool:
        """Stripe now, as contention would (tests): this twin never stripes."""
        return False

    def _striped(self) -> bool:
        return False

    def reset(self) -> None:
        """Forget every observation (a forked child starts from zero); the schema stays."""
        with self._lock:
            self._zero = 0
            self._pk, self._pc = _side()
            self._nk, self._nc = _side()


def merge_states(states: Iterable[Sequence[Any]]) -> tuple[int, float, int, list, list]:
    """One state from several (processes'): every one brought to the lowest schema, then added.

    A state is ``(schema, zero_threshold, zero_count, positive, negative)``. Zero
    thresholds must agree (a family's do); an empty iterable is a ValueError.
    """
    states = list(states)
    if not states:
        raise ValueError("nothing to merge")
    schema = min(int(s[0]) for s in states)
    zt = float(states[0][1])
    zero = 0
    pos: dict[int, int] = {}
    neg: dict[int, int] = {}
    for s_schema, s_zt, s_zero, s_pos, s_neg in states:
        if float(s_zt) != zt:
            raise ValueError("native histograms with different zero thresholds cannot be merged")
        zero += int(s_zero)
        shift = int(s_schema) - schema
        for src, dst in ((s_pos, pos), (s_neg, neg)):
            for key, count in src:
                k = -((-int(key)) >> shift)  # ceil(key / 2**shift)
                dst[k] = dst.get(k, 0) + int(count)
    return schema, zt, zero, sorted(pos.items()), sorted(neg.items())


def spans_and_deltas(buckets: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    """Protobuf's form of populated buckets: ``[(offset, length)]`` spans and count deltas.

    A gap of one or two empty buckets stays inside a span (as zero counts), a longer
    one starts a new span: client_golang's choice, so our bytes read like its bytes.
    """
    spans: list[list[int]] = []
    deltas: list[int] = []
    prev = 0
    nxt = 0
    for n, (key, count) in enumerate(buckets):
        gap = key - nxt
        if n == 0 or gap > 2:
            spans.append([gap, 0])
        else:
            for _ in range(gap):
                spans[-1][1] += 1
                deltas.append(-prev)
                prev = 0
        spans[-1][1] += 1
        deltas.append(count - prev)
        prev = count
        nxt = key + 1
    return [(o, n) for o, n in spans], deltas


# --- protobuf wire format (io.prometheus.client, proto2) ----------------------

_DOUBLE = struct.Struct("<d")
_VALUE = struct.Struct("d")  # a value in a multiprocess file: native byte order, as prometheus_client's
_NO_SLOT: Any = object()


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _field_bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _field_double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + _DOUBLE.pack(value)


def _field_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def encode_histogram(
    count: float,
    total: float | None,
    bounds: Sequence[float],
    cumulative: Sequence[float],
    exemplars: Sequence[bytes | None] | None,
    native: Any,
    created: bytes | None,
) -> bytes:
    """The body of an ``io.prometheus.client.Histogram`` message.

    ``bounds``/``cumulative``: the classic buckets (a last +Inf bound is left out: its
    count is ``sample_count``); ``exemplars``: None or one encoded Exemplar message (or
    None) per bound; ``native``: None, a ``NativeHistogram`` or a state tuple;
    ``created``: an encoded Timestamp message or None; ``total`` None leaves out the sum.

    With a native part, ``sample_count`` is the observations its buckets hold (zero
    bucket included), read at the same instant as them, not ``count``: Prometheus
    refuses a native histogram whose count is below its buckets', and the classic
    counts, read a moment earlier by the caller, may be behind (or, without a GIL,
    ahead: a classic count above it is lowered to it).
    """
    state = None
    if native is not None:
        state = native.state() if isinstance(native, NativeHistogram) else native
        count = int(state[2]) + sum(int(c) for _, c in state[3]) + sum(int(c) for _, c in state[4])
    out = bytearray(_field_varint(1, int(count)))
    if total is not None:
        out += _field_double(2, total)
    for i, bound in enumerate(bounds):
        if bound == _INF:
            continue
        c = int(cumulative[i])
        if state is not None and c > count:
            c = int(count)
        bucket = _field_varint(1, c) + _field_double(2, bound)
        ex = exemplars[i] if exemplars else None
        if ex is not None:
            bucket += _field_bytes(3, ex)
        out += _field_bytes(3, bucket)
    if state is not None:
        schema, zt, zero, pos, neg = state
        out += _varint(5 << 3) + _varint(_zigzag(int(schema)))
        out += _field_double(6, zt)
        out += _field_varint(7, int(zero))
        if not pos and not neg and not zero and not zt:
            # Nothing tells an empty native histogram with a zero threshold of 0 from a classic
            # one: a no-op span (offset 0, length 0) does, as newer client_golang versions write.
            out += _field_bytes(12, _varint(1 << 3) + _varint(0) + _field_varint(2, 0))
        for span_field, delta_field, buckets in ((9, 10, neg), (12, 13, pos)):
            if not buckets:
                continue
            spans, deltas = spans_and_deltas(buckets)
            for offset, length in spans:
                span = _varint(1 << 3) + _varint(_zigzag(offset)) + _field_varint(2, length)
                out += _field_bytes(span_field, span)
            out += _field_bytes(delta_field, b"".join(_varint(_zigzag(d)) for d in deltas))
    if created is not None:
        out += _field_bytes(15, created)
    return bytes(out)
