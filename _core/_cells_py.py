"""Pure-Python twin of the compiled cells (``_cells_c.pyx``): same API, same behaviour.

Keep the two files in step: every public name and every behaviour here has its
counterpart there, and the test suite runs against both.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.context_managers import ExceptionCounter, InprogressTracker, Timer
from prometheus_client.mmap_dict import MmapedDict

__all__ = [
    "MISSING",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MultiProcessStore",
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

    __slots__ = ("_children", "_factory", "_lock", "_pass_values")

    def __init__(self, factory: Callable[..., Any], pass_values: bool = False) -> None:
        # ``pass_values``: call ``factory(values)`` rather than ``factory()``, for
        # cells that need to know their labels (multiprocess files are keyed by them).
        self._factory = factory
        self._pass_values = pass_values
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def get(self, values: tuple[str, ...]) -> Any:
        cell = self._children.get(values)
        if cell is None:
            with self._lock:
                cell = self._children.get(values)
                if cell is None:
                    cell = self._factory(values) if self._pass_values else self._factory()
                    self._children[values] = cell
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
    takes_kwargs: bool = True,
) -> Callable[..., Any]:
    """Wrap a cache backend's ``get`` so that each call counts get + hit/miss/fail.

    ``real_get(key, MISSING, version, **kwargs)`` is called; getting ``MISSING``
    back is a miss (so stored falsy values and ``None`` are hits), getting
    ``interrupted`` back is a failure the backend chose to swallow (django-redis'
    ``IGNORE_EXCEPTIONS``), and an exception is counted and re-raised unchanged.
    Without ``takes_kwargs`` the get takes ``(key, default=None, version=None)``
    only, as Django's own backends' do.
    """

    def counted(value: Any, default: Any) -> Any:
        gets.inc()
        if value is MISSING:
            misses.inc()
            return default
        if value is interrupted:
            fails.inc()
            return default
        hits.inc()
        return value

    def get_kw(key: Any, default: Any = None, version: Any = None, **kwargs: Any) -> Any:
        try:
            value = real_get(key, MISSING, version, **kwargs)
        except Exception:
            gets.inc()
            fails.inc()
            raise
        return counted(value, default)

    def get(key: Any, default: Any = None, version: Any = None) -> Any:
        try:
            value = real_get(key, MISSING, version)
        except Exception:
            gets.inc()
            fails.inc()
            raise
        return counted(value, default)

    return get_kw if takes_kwargs else get


def record_get_many(
    requested: Sequence[Any], found: int, gets: Counter, hits: Counter, misses: Counter
) -> None:
    """Count a native ``get_many``: each distinct requested key is one get and one hit or miss."""
    n = len(set(requested))
    gets.inc(n)
    hits.inc(found)
    misses.inc(n - found)


# --- Multiprocess mode ------------------------------------------------------
#
# Same files as the compiled core (``counter_django_<pid>.db``,
# ``histogram_django_<pid>.db``, prometheus_client's format, written with its
# own MmapedDict), so MultiProcessCollector sums them with everyone else's.
# Each cell keeps its value in process and writes it through on every change.


class _Detached:
    """Where a closed store's cells write: nowhere."""

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        pass


_DETACHED = _Detached()


class _MmapCounter(Counter):
    __slots__ = ("_file", "_key")

    def inc(self, amount: float = 1.0, exemplar: object = None) -> None:
        amount = float(amount)
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        with self._lock:
            self._v += amount
            self._file.write_value(self._key, self._v, 0.0)

    def _attach(self, file: Any) -> None:
        self._file = file
        if file is not _DETACHED:
            self._v = file.read_value(self._key)[0]


class _MmapHistogram(Histogram):
    __slots__ = ("_bucket_keys", "_file", "_sum_key")

    def observe(self, amount: float, exemplar: object = None) -> None:
        amount = float(amount)
        i = bisect_left(self.bounds, amount)
        with self._lock:
            self._sum += amount
            self._file.write_value(self._sum_key, self._sum, 0.0)
            if i < len(self._counts) and amount == amount:
                self._counts[i] += 1.0
                self._file.write_value(self._bucket_keys[i], self._counts[i], 0.0)

    def _attach(self, file: Any) -> None:
        self._file = file
        if file is not _DETACHED:
            self._counts = [file.read_value(k)[0] for k in self._bucket_keys]
            self._sum = file.read_value(self._sum_key)[0]


_STORES: weakref.WeakSet[MultiProcessStore] = weakref.WeakSet()


class MultiProcessStore:
    """This process' metrics files in ``directory``, and every cell that writes into them.

    After a fork the child moves every cell to files of its own (an
    ``os.register_at_fork`` hook, plus ``check_pid()`` for servers such as
    uWSGI that fork without running Python's fork hooks; call it once per
    request). The parent's counts stay in the parent's files.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self._files: dict[str, MmapedDict] = {}
        self._tracked: list[tuple[Any, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        _STORES.add(self)

    def _file_for(self, typ: str) -> MmapedDict:
        f = self._files.get(typ)
        if f is None:
            f = self._files[typ] = MmapedDict(os.path.join(self.directory, f"{typ}_django_{self.pid}.db"))
        return f

    def counter(self, key: str) -> Counter:
        """A Counter whose value is the ``key`` entry of this process' counter file."""
        cell = _MmapCounter()
        cell._key = key
        self.check_pid()
        with self._lock:
            self._check_open()
            cell._attach(self._file_for("counter"))
            self._tracked.append((cell, "counter"))
        return cell

    def histogram(self, bounds: Iterable[float], bucket_keys: Iterable[str], sum_key: str) -> Histogram:
        """A Histogram whose buckets and sum are entries of this process' histogram file."""
        cell = _MmapHistogram(bounds)
        cell._bucket_keys = tuple(bucket_keys)
        cell._sum_key = sum_key
        if len(cell._bucket_keys) != len(cell.bounds):
            raise ValueError("one key per bucket is needed")
        self.check_pid()
        with self._lock:
            self._check_open()
            cell._attach(self._file_for("histogram"))
            self._tracked.append((cell, "histogram"))
        return cell

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this multiprocess store is closed")

    def check_pid(self) -> None:
        """Move every cell to this process' own files if we are in a forked child."""
        if os.getpid() != self.pid:
            self._after_fork()

    def _after_fork(self) -> None:
        # The parent's threads did not come along: its lock may be held forever.
        self._lock = threading.Lock()
        with self._lock:
            if self._closed or os.getpid() == self.pid:
                return
            old, self._files = self._files, {}
            self.pid = os.getpid()
            for cell, typ in self._tracked:
                cell._attach(self._file_for(typ))
            for f in old.values():
                f.close()

    def close(self) -> None:
        """Detach every cell (they keep their values, in process) and close the files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cell, _ in self._tracked:
                cell._attach(_DETACHED)  # they go on counting in process only
            self._tracked = []
            for f in self._files.values():
                f.close()
            self._files = {}


def _reopen_after_fork() -> None:
    for store in list(_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reopen_after_fork)
