"""Pure-Python twin of the compiled cells (``_cells_c.pyx``): same API, same behaviour.

Keep the two files in step: every public name and every behaviour here has its
counterpart there, and the test suite runs against both.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.context_managers import ExceptionCounter, InprogressTracker, Timer

__all__ = [
    "MISSING",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "instrument_get",
    "record_get_many",
]

#: The private default handed to a backend's real ``get()``: nothing a user can
#: store is this object, so "the backend returned it" means "the key is absent".
MISSING: Any = object()
_INF = float("inf")


class Counter:
    """A monotonically increasing float."""

    __slots__ = ("_lock", "_v", "created")

    def __init__(self) -> None:
        self._v = 0.0
        self._lock = threading.Lock()
        self.created = time.time()

    def inc(self, amount: float = 1.0, exemplar: object = None) -> None:
        amount = float(amount)
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        with self._lock:
            self._v += amount

    def get(self) -> float:
        return self._v

    def count_exceptions(self, exception: type[BaseException] | tuple = Exception) -> ExceptionCounter:
        return ExceptionCounter(self, exception)

    @property
    def _value(self) -> Counter:
        # prometheus_client children expose their value as ``child._value.get()``;
        # users' tests rely on it.
        return self


class Gauge:
    """A float that can go up and down."""

    __slots__ = ("_lock", "_v", "created")

    def __init__(self) -> None:
        self._v = 0.0
        self._lock = threading.Lock()
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._v += float(amount)

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._v -= float(amount)

    def set(self, value: float) -> None:
        self._v = float(value)

    def set_to_current_time(self) -> None:
        self._v = time.time()

    def get(self) -> float:
        return self._v

    def track_inprogress(self) -> InprogressTracker:
        return InprogressTracker(self)

    def time(self) -> Timer:
        return Timer(self, "set")

    @property
    def _value(self) -> Gauge:
        return self


class Histogram:
    """Fixed upper bounds, one count per bucket and a running sum."""

    __slots__ = ("_counts", "_lock", "_sum", "bounds", "created")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = _check_bounds(bounds)
        self._counts = [0.0] * len(self.bounds)
        self._sum = 0.0
        self._lock = threading.Lock()
        self.created = time.time()

    def observe(self, amount: float, exemplar: object = None) -> None:
        amount = float(amount)
        # First bound >= amount, by bisection; NaN lands in no bucket, as in prometheus_client.
        i = bisect_left(self.bounds, amount)
        with self._lock:
            self._sum += amount
            if i < len(self._counts) and amount == amount:
                self._counts[i] += 1.0

    def time(self) -> Timer:
        return Timer(self, "observe")

    @property
    def sum(self) -> float:
        return self._sum

    @property
    def count(self) -> float:
        return sum(self._counts)

    def buckets(self) -> list[float]:
        """Cumulative bucket counts, one per bound (what ``_bucket`` samples show)."""
        acc = 0.0
        out = []
        for c in self._counts:
            acc += c
            out.append(acc)
        return out


def _check_bounds(bounds: Iterable[float]) -> tuple[float, ...]:
    b = [float(x) for x in bounds]
    if b != sorted(b):
        raise ValueError("Buckets not in sorted order")
    if not b or b[-1] != _INF:
        b.append(_INF)
    if len(b) < 2:
        raise ValueError("Must have at least two buckets")
    return tuple(b)


class Family:
    """Label-value tuple -> cell. Creating a child takes a lock; reading one never does."""

    __slots__ = ("_children", "_factory", "_lock")

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def get(self, values: tuple[str, ...]) -> Any:
        cell = self._children.get(values)
        if cell is None:
            with self._lock:
                cell = self._children.get(values)
                if cell is None:
                    cell = self._children[values] = self._factory()
        return cell

    def children(self) -> list[tuple[tuple[str, ...], Any]]:
        return list(self._children.items())

    def remove(self, values: tuple[str, ...]) -> None:
        with self._lock:
            self._children.pop(values, None)

    def clear(self) -> None:
        with self._lock:
            self._children.clear()

    def __len__(self) -> int:
        return len(self._children)


def instrument_get(
    real_get: Callable[..., Any],
    gets: Counter,
    hits: Counter,
    misses: Counter,
    fails: Counter,
    interrupted: Any = MISSING,
) -> Callable[..., Any]:
    """Wrap a cache backend's ``get`` so that each call counts get + hit/miss/fail.

    ``real_get(key, MISSING, version, **kwargs)`` is called; getting ``MISSING``
    back is a miss (so stored falsy values and ``None`` are hits), getting
    ``interrupted`` back is a failure the backend chose to swallow (django-redis'
    ``IGNORE_EXCEPTIONS``), and an exception is counted and re-raised unchanged.
    """

    def get(key: Any, default: Any = None, version: Any = None, **kwargs: Any) -> Any:
        try:
            value = real_get(key, MISSING, version, **kwargs)
        except Exception:
            gets.inc()
            fails.inc()
            raise
        gets.inc()
        if value is MISSING:
            misses.inc()
            return default
        if value is interrupted:
            fails.inc()
            return default
        hits.inc()
        return value

    return get


def record_get_many(
    requested: Sequence[Any], found: int, gets: Counter, hits: Counter, misses: Counter
) -> None:
    """Count a native ``get_many``: each distinct requested key is one get and one hit or miss."""
    n = len(set(requested))
    gets.inc(n)
    hits.inc(found)
    misses.inc(n - found)
