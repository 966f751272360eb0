"""Pure-Python twin of the compiled cells (``_cells_c.pyx``): same API, same behaviour.

Keep the two files in step: every public name and every behaviour here has its
counterpart there, and the test suite runs against both.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import re
import struct
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.context_managers import ExceptionCounter, InprogressTracker, Timer

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MultiProcessStore",
]

#: The private default handed to a backend's real ``get()``: nothing a user can
#: store is this object, so "the backend returned it" means "the key is absent".
_INF = float("inf")
# OpenMetrics' label names (exemplar labels follow the rules of metric labels).
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Stripes a contended cell spreads over: none here (each cell takes its lock; the compiled
#: cells stripe on free-threaded builds).
STRIPES = 0


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

    def _striped(self) -> bool:
        """Always False: these cells never stripe (see ``STRIPES``)."""
        return False

    def _stripe(self) -> bool:
        """A no-op (the compiled cells stripe now, on free-threaded builds): False."""
        return False

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

    __slots__ = ("_capture", "_counts", "_ex", "_lock", "_native", "_sum", "bounds", "created")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = _check_bounds(bounds)
        self._counts = [0.0] * len(self.bounds)
        self._sum = 0.0
        self._lock = threading.Lock()
        self.created = time.time()
        # None, or exemplar labels (a dict or None) for the current observation.
        self._capture: Callable[[], dict[str, str] | None] | None = None
        # None until the first exemplar: one (labels, value, timestamp) or None per bucket.
        self._ex: list[tuple[dict[str, str], float, float] | None] | None = None
        # None, or a _native_py.NativeHistogram counting the same observations.
        self._native: Any = None

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """Count ``amount``; an ``exemplar`` (label dict) marks its bucket, as in prometheus_client."""
        labels = None if exemplar is None else _check_exemplar(exemplar)
        amount = float(amount)
        # First bound >= amount, by bisection; NaN lands in no bucket, as in prometheus_client.
        i = bisect_left(self.bounds, amount)
        with self._lock:
            self._sum += amount
            if i < len(self._counts) and amount == amount:
                self._counts[i] += 1.0
            else:
                return
            native = self._native
            if native is not None:  # the one branch native histograms cost when off
                native.observe(amount)
        if labels is not None:
            self._keep(i, labels, amount)
        elif self._capture is not None:  # the one branch exemplars cost when off
            self._captured(i, amount)

    def _captured(self, i: int, amount: float) -> None:
        # Instrumentation never breaks the app: a failing capture records nothing.
        try:
            labels = self._capture()  # type: ignore[misc]
            if labels is not None:
                self._keep(i, labels, amount)
        except BaseException:
            pass

    def _keep(self, i: int, labels: dict[str, str], amount: float) -> None:
        # One exemplar per bucket, the latest wins (OpenMetrics; prometheus_client does the same).
        if type(labels) is not dict:
            raise TypeError("exemplar labels must be a dict")
        ex = self._ex
        if ex is None:
            ex = self._ex = [None] * len(self.bounds)
        ex[i] = (labels, amount, time.time())

    def set_exemplar_capture(self, capture: Callable[[], dict[str, str] | None] | None) -> None:
        """``capture()`` -> exemplar labels or None, called on every observation; None: stop capturing.

        Stopping also forgets the exemplars kept so far.
        """
        if capture is None:
            self._capture = None
            self._ex = None
        elif not callable(capture):
            raise TypeError("capture must be callable or None")
        else:
            self._capture = capture

    def exemplars(self) -> list[tuple[dict[str, str], float, float] | None] | None:
        """None, or per bucket: None or the latest ``(labels, value, timestamp)`` observed into it."""
        ex = self._ex
        return None if ex is None else list(ex)

    def set_native(self, native: Any) -> None:
        """Count every observation in ``native`` too (a ``_native.NativeHistogram``), or stop (None)."""
        if native is not None:
            from . import _native_py

            if type(native) is not _native_py.NativeHistogram:
                raise TypeError("native must be a NativeHistogram or None")
        self._native = native

    @property
    def native(self) -> Any:
        """None, or the native histogram counting the same observations."""
        return self._native

    def time(self) -> Timer:
        return Timer(self, "observe")

    def _striped(self) -> bool:
        """Always False: these cells never stripe (see ``STRIPES``)."""
        return False

    def _stripe(self) -> bool:
        """A no-op (the compiled cells stripe now, on free-threaded builds): False."""
        return False

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


def _check_exemplar(exemplar: dict[str, str]) -> dict[str, str]:
    """A copy of an exemplar's labels, or ValueError where prometheus_client raises one."""
    labels = dict(exemplar)
    runes = 0
    for k, v in labels.items():
        if type(k) is not str or _LABEL_NAME.fullmatch(k) is None or k.startswith("__"):
            raise ValueError(f"Invalid label metric name: {k!r}")
        if type(v) is not str:
            raise ValueError(f"Exemplar label value must be a string: {v!r}")
        runes += len(k) + len(v)
    if runes > 128:
        raise ValueError(f"Exemplar labels have {runes} UTF-8 characters, exceeding the limit of 128")
    return labels


def _check_bounds(bounds: Iterable[float]) -> tuple[float, ...]:
    b = [float(x) for x in bounds]
    if b != sorted(b):
        raise ValueError("Buckets not in sorted order")
    if not b or b[-1] != _INF:
        b.append(_INF)
    if len(b) < 2:
        raise ValueError("Must have at least two buckets")
    return tuple(b)


def _clean_values(values: tuple[str, ...]) -> tuple[str, ...]:
    """Label values with NUL and CR replaced by U+FFFD (see ``Family``)."""
    if not any(type(v) is str and ("\0" in v or "\r" in v) for v in values):
        return values
    return tuple(v.replace("\0", "\ufffd").replace("\r", "\ufffd") if type(v) is str else v for v in values)


class Family:
    """Label-value tuple -> cell. Creating a child takes a lock; reading one never does.

    NUL and CR in a label value become U+FFFD (the Unicode replacement
    character) when the child is created: the exposition formats have no
    escape for them, and some consumers choke on them raw. The raw tuple stays
    an alias of the cleaned child, so lookups stay one dict probe.
    """

    __slots__ = ("_aliases", "_children", "_factory", "_lock", "render_cache", "version")

    def __init__(self, factory: Callable[[tuple[str, ...]], Any]) -> None:
        # ``factory(label_values)`` makes a child: cells may need their labels
        # (multiprocess files are keyed by them).
        self._factory = factory
        self._children: dict[tuple[str, ...], Any] = {}
        self._aliases: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        # Bumped whenever the set of children changes; the exposition writer keeps what it
        # prepared for these children in ``render_cache`` while the version is the same.
        self.version = 0
        self.render_cache: Any = None

    def get(self, values: tuple[str, ...]) -> Any:
        cell = self._children.get(values)
        if cell is None:
            cell = self._aliases.get(values)
            if cell is None:
                cell = self._create(values)
        return cell

    def _create(self, values: tuple[str, ...]) -> Any:
        with self._lock:
            cell = self._children.get(values)
            if cell is None:
                clean = _clean_values(values)
                cell = self._children.get(clean)
                if cell is None:
                    cell = self._factory(clean)
                    self._children[clean] = cell
                    self.version += 1
                if clean is not values:
                    self._aliases[values] = cell
        return cell

    def children(self) -> list[tuple[tuple[str, ...], Any]]:
        # Under the lock: copying the items can run the GC (and any finalizer's Python code),
        # letting a creating or removing thread change the dict mid-copy (3.10 raised
        # "dictionary changed size during iteration" in the family stress test).
        with self._lock:
            return list(self._children.items())

    def snapshot(self) -> tuple[int, list[tuple[str, ...]], list[Any]]:
        """``(version, label-value tuples, cells)``, consistent: what a scrape reads (no pair per child)."""
        with self._lock:
            return self.version, list(self._children), list(self._children.values())

    def snapshot_flat(self) -> tuple[int, int, list[str], list[Any]]:
        """``(version, label count, label values, cells)``: the compiled core's scrape shape.

        The values of child ``i`` are ``values[i * count:(i + 1) * count]``; a family whose
        children have different label counts gives count -1 and one tuple per child.
        """
        with self._lock:
            keys = list(self._children)
            cells = list(self._children.values())
            count = len(keys[0]) if keys else 0
            if any(len(key) != count for key in keys):
                return self.version, -1, keys, cells
            return self.version, count, [v for key in keys for v in key], cells

    def remove(self, values: tuple[str, ...]) -> None:
        with self._lock:
            cell = self._children.pop(_clean_values(values), None)
            if cell is not None:
                self.version += 1
                if self._aliases:
                    self._aliases = {k: c for k, c in self._aliases.items() if c is not cell}

    def clear(self) -> None:
        with self._lock:
            self._children.clear()
            self._aliases.clear()
            self.version += 1

    def __len__(self) -> int:
        return len(self._children)


# --- Multiprocess mode ------------------------------------------------------
#
# Same files as the compiled core (``counter_django_<pid>.db``,
# ``histogram_django_<pid>.db``, ``gauge_<mode>_<pid>.db_django.db``), in
# prometheus_client's format, so MultiProcessCollector sums them with everyone
# else's. Each cell keeps its value in process and writes it through on every
# change. Every byte of a file is reserved on the filesystem before it is
# mapped (``_reserve``): a full disk is an OSError when a file is created or
# grows, never a SIGBUS at a write through the mapping.

_INITIAL_SIZE = 1 << 16
_HEAD = struct.Struct("i")
_VALUE = struct.Struct("dd")
_MOST_RECENT = ("mostrecent", "livemostrecent")
_GAUGE_MODES = ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", *_MOST_RECENT)
# posix_fallocate() refused by the filesystem itself (not a lack of space): write zeros instead.
_NO_FALLOCATE = {
    getattr(errno, n) for n in ("EOPNOTSUPP", "ENOTSUP", "EINVAL", "ENOSYS") if hasattr(errno, n)
}


def _reserve(f: Any, start: int, end: int) -> None:
    """Give ``f`` real blocks for its bytes ``[start, end)`` now, growing it to ``end`` if shorter.

    The files are memory-mapped: a page the filesystem cannot back (a sparse
    file on a full disk) is a SIGBUS at the first write that touches it.
    Reserved here, a full disk is an OSError at a known point instead.
    """
    if end <= start:
        return
    try:
        os.posix_fallocate(f.fileno(), start, end - start)
        return
    except AttributeError:  # pragma: no cover - no posix_fallocate (macOS)
        pass
    except OSError as exc:  # pragma: no cover - a filesystem without fallocate
        if exc.errno not in _NO_FALLOCATE:
            raise
    size = os.fstat(f.fileno()).st_size  # pragma: no cover - zeros past the end (the file is "a+b")
    if end > size:  # pragma: no cover
        f.write(bytes(end - size))
        f.flush()


def _filename(directory: str, typ: str, pid: int) -> str:
    """This process' file of ``typ`` ("counter", "histogram", "gauge_<mode>")."""
    if typ.startswith("gauge_"):
        # prometheus_client reads a gauge file's mode and pid from "gauge_<mode>_<pid>.db...":
        # the pid is what precedes the third "_" minus 3 characters; ours end in "_django.db".
        return os.path.join(directory, f"{typ}_{pid}.db_django.db")
    return os.path.join(directory, f"{typ}_django_{pid}.db")


def _doubles(m: mmap.mmap, offset: int) -> memoryview:
    """``m`` from ``offset`` on as a view of doubles: ``view[i] = x`` writes the double at ``offset + 8 * i``.

    A cell writes its value through such a view, at the index it got when it was
    attached: one item assignment, no key lookup and no ``struct`` call. Every
    entry's value sits at a multiple of 8 (offset 0) unless a file left by an
    earlier process of this pid says otherwise.
    """
    whole = memoryview(m)
    try:
        return whole[offset : offset + (len(m) - offset) // 8 * 8].cast("d")
    finally:
        whole.release()


def _entry_size(key: str) -> int:
    n = len(key.encode("utf-8"))
    return 4 + n + (8 - (n + 4) % 8) + 16


def _drop_if_dead(filename: str) -> None:
    """Remove ``filename`` if no live process holds it: a dead process of our pid left it.

    For live gauges (``live*`` modes): a dead process' values must not become ours.
    """
    if fcntl is None:  # pragma: no cover - no flock: no way to tell
        return
    try:
        fd = os.open(filename, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another store of this process writes it: it is live
        with contextlib.suppress(FileNotFoundError):
            if os.stat(filename).st_ino == os.fstat(fd).st_ino:
                os.remove(filename)
    finally:
        os.close(fd)


class _MmapFile:
    """One of this process' files: append-only, prometheus_client's format, its space reserved."""

    def __init__(self, filename: str) -> None:
        self._file = _open_locked(filename)
        try:
            capacity = os.fstat(self._file.fileno()).st_size
            _reserve(self._file, 0, capacity or _INITIAL_SIZE)  # a sparse leftover gets its blocks too
            capacity = capacity or _INITIAL_SIZE
            self._maps = [mmap.mmap(self._file.fileno(), capacity)]
        except BaseException:
            _remove_if_empty(filename, self._file)
            self._file.close()
            raise
        self._capacity = capacity
        # Per mapping: its views of doubles by offset modulo 8 (``slot``), released by close().
        self._views: list[dict[int, memoryview]] = [{}]
        self._positions: dict[str, int] = {}
        m = self._maps[-1]
        self._used = _HEAD.unpack_from(m, 0)[0]
        if self._used == 0:
            self._used = 8
            m[0:4] = _HEAD.pack(8)
        else:  # a recycled pid: keep appending to what the earlier process left
            self._index()

    def _index(self) -> None:
        m, pos = self._maps[-1], 8
        if self._used > self._capacity:
            raise RuntimeError("metrics file is corrupted: header beyond file size")
        while pos < self._used:
            n = _HEAD.unpack_from(m, pos)[0]
            if n < 0 or pos + 4 + n > self._used:
                raise RuntimeError("metrics file is corrupted: entry beyond used size")
            key = m[pos + 4 : pos + 4 + n].decode("utf-8")
            pos += 4 + n + (8 - (n + 4) % 8)
            self._positions[key] = pos
            pos += 16

    def make_room(self, keys: Iterable[str]) -> None:
        """Reserve the space of every absent entry of ``keys`` at once (OSError: none is added)."""
        need = self._used + sum(_entry_size(k) for k in set(keys) if k not in self._positions)
        capacity = self._capacity
        while need > capacity:
            capacity *= 2
        if capacity != self._capacity:
            _reserve(self._file, self._capacity, capacity)
            # Earlier mappings stay open: another thread may be writing through one (same pages).
            self._maps.append(mmap.mmap(self._file.fileno(), capacity))
            self._views.append({})
            self._capacity = capacity

    def _append(self, key: str) -> int:
        self.make_room((key,))
        encoded = key.encode("utf-8")
        padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
        m, start = self._maps[-1], self._used
        end = start + 4 + len(padded) + 16
        m[start:end] = _HEAD.pack(len(encoded)) + padded + bytes(16)
        self._used = end
        m[0:4] = _HEAD.pack(end)  # after the entry: readers never see half of one
        self._positions[key] = end - 16
        return end - 16

    def position(self, key: str) -> int:
        """Where ``key``'s value double is (its entry appended if absent), in every mapping."""
        pos = self._positions.get(key)
        return self._append(key) if pos is None else pos

    def slot(self, key: str) -> tuple[memoryview, int]:
        """``(view, i)``: ``view[i] = x`` writes ``key``'s value double (its entry appended if absent).

        The view is of the largest mapping, which covers every position handed out so far.
        """
        pos = self.position(key)
        views, offset = self._views[-1], pos & 7
        view = views.get(offset)
        if view is None:
            view = views[offset] = _doubles(self._maps[-1], offset)
        return view, pos >> 3

    def read_value(self, key: str) -> tuple[float, float]:
        pos = self._positions.get(key)
        if pos is None:
            pos = self._append(key)
        return _VALUE.unpack_from(self._maps[-1], pos)

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        pos = self._positions.get(key)
        if pos is None:
            pos = self._append(key)
        self._maps[-1][pos : pos + 16] = _VALUE.pack(value, timestamp)

    def close(self) -> None:
        for views in self._views:
            for view in views.values():
                view.release()  # a mapping with views of it cannot close
        self._views = []
        for m in self._maps:
            m.close()
        self._maps = []
        self._file.close()


def _remove_if_empty(filename: str, f: Any) -> None:
    """A file we could not reserve and never wrote: readers must not meet an empty file."""
    with contextlib.suppress(OSError):
        st = os.fstat(f.fileno())
        if st.st_size == 0 and os.stat(filename).st_ino == st.st_ino:
            os.remove(filename)


class _Detached:
    """Where a closed store's cells write: nowhere."""

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        pass


_DETACHED = _Detached()


class _MmapCounter(Counter):
    """A counter written through to this process' file; ``_file`` None until its first write.

    ``_m`` and ``_pos``: its value is written at ``_m[_pos]`` (``_m`` None: nowhere), see ``_MmapFile.slot``.
    """

    __slots__ = ("_file", "_key", "_m", "_pos", "_store")

    def inc(self, amount: float = 1.0, exemplar: object = None) -> None:
        amount = float(amount)
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        if self._file is None:
            self._store._attach(self)
        with self._lock:
            self._v += amount
            if self._m is not None:
                self._m[self._pos] = self._v

    def _keys(self) -> tuple[str, ...]:
        return (self._key,)

    def _attach(self, file: Any) -> None:
        self._m = None
        if file is not _DETACHED and file is not None:
            self._v += file.read_value(self._key)[0]
            file.write_value(self._key, self._v, 0.0)
            self._m, self._pos = file.slot(self._key)
        self._file = file

    def _reset(self) -> None:
        self._v = 0.0
        self._m = None
        self._file = None


class _MmapGauge(Gauge):
    """A gauge written through to this process' file of its ``multiprocess_mode``."""

    __slots__ = ("_file", "_key", "_m", "_pos", "_stamp", "_store", "_typ")

    def inc(self, amount: float = 1.0) -> None:
        self._add(float(amount), "inc")

    def dec(self, amount: float = 1.0) -> None:
        self._add(-float(amount), "dec")

    def _add(self, amount: float, how: str) -> None:
        if self._stamp:  # as prometheus_client's Gauge: the newest value needs a set()
            raise RuntimeError(f"{how} must not be used with the mostrecent mode")
        if self._file is None:
            self._store._attach(self)
        with self._lock:
            self._v += amount
            if self._m is not None:
                self._m[self._pos] = self._v

    def set(self, value: float) -> None:
        value = float(value)
        if self._file is None:
            self._store._attach(self)
        with self._lock:
            self._v = value
            m = self._m
            if m is not None:
                m[self._pos] = value
                m[self._pos + 1] = time.time() if self._stamp else 0.0

    def set_to_current_time(self) -> None:
        self.set(time.time())

    def _keys(self) -> tuple[str, ...]:
        return (self._key,)

    def _attach(self, file: Any) -> None:
        self._m = None
        if file is not _DETACHED and file is not None:
            value, timestamp = file.read_value(self._key)
            self._v += value
            file.write_value(self._key, self._v, timestamp)
            self._m, self._pos = file.slot(self._key)
        self._file = file

    def _reset(self) -> None:
        self._v = 0.0
        self._m = None
        self._file = None


class _MmapHistogram(Histogram):
    # Its sum is written at ``_m[_sum_pos]``, bucket i's count at ``_bucket_m[i][_bucket_pos[i]]``.
    __slots__ = ("_bucket_keys", "_bucket_m", "_bucket_pos", "_file", "_m", "_store", "_sum_key", "_sum_pos")

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        labels = None if exemplar is None else _check_exemplar(exemplar)
        amount = float(amount)
        i = bisect_left(self.bounds, amount)
        if self._file is None:
            self._store._attach(self)
        with self._lock:
            self._sum += amount
            m = self._m
            if m is not None:
                m[self._sum_pos] = self._sum
            if i < len(self._counts) and amount == amount:
                self._counts[i] += 1.0
                if m is not None:
                    self._bucket_m[i][self._bucket_pos[i]] = self._counts[i]
            else:
                return
            native = self._native
            if native is not None:  # the one branch native histograms cost when off
                native.observe(amount)
        # Kept in process only, as the compiled core does: multiprocess files carry no exemplars.
        if labels is not None:
            self._keep(i, labels, amount)
        elif self._capture is not None:
            self._captured(i, amount)

    def _keys(self) -> tuple[str, ...]:
        return (*self._bucket_keys, self._sum_key)

    def _attach(self, file: Any) -> None:
        if file is not _DETACHED and file is not None:
            self._counts = [
                c + file.read_value(k)[0] for c, k in zip(self._counts, self._bucket_keys, strict=True)
            ]
            self._sum += file.read_value(self._sum_key)[0]
            for k, c in zip(self._bucket_keys, self._counts, strict=True):
                file.write_value(k, c, 0.0)
            file.write_value(self._sum_key, self._sum, 0.0)
            slots = [file.slot(k) for k in self._bucket_keys]
            self._bucket_m = tuple(view for view, _ in slots)
            self._bucket_pos = tuple(i for _, i in slots)
            self._m, self._sum_pos = file.slot(self._sum_key)
        else:
            self._m = None
        self._file = file

    def _reset(self) -> None:
        self._counts = [0.0] * len(self.bounds)
        self._sum = 0.0
        self._m = None
        self._file = None


def _open_locked(filename: str) -> Any:
    """Open (or create) ``filename`` and hold a shared lock on it for as long as it is open.

    The lock says "a live process writes here": compaction folds (or, for live
    gauges, drops) only files it can lock exclusively
    (``django_prometheus.multiprocess.compact``). If a compaction renamed the
    file away while we waited for the lock, open again.
    """
    while True:
        f = open(filename, "a+b")  # noqa: SIM115 - kept open for the store's life
        if fcntl is None:  # pragma: no cover - no flock on this platform: no compaction either
            return f
        fd = f.fileno()
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            same = os.stat(filename).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return f
        f.close()


_STORES: weakref.WeakSet[MultiProcessStore] = weakref.WeakSet()


class MultiProcessStore:
    """This process' metrics files in ``directory``, and every cell that writes into them.

    A cell gets its entry when it is created, so its zero shows in scrapes, as
    with prometheus_client's own values. After a fork the child's cells go
    back to "not written yet" (an ``os.register_at_fork`` hook, plus
    ``check_pid()`` for servers such as uWSGI that fork without running
    Python's fork hooks; call it once per request), so only its first write
    opens files of its own: a forked child that never counts (``subprocess``
    with ``preexec_fn``, a ``multiprocessing`` pool) leaves no file behind.
    The parent's counts stay in the parent's files.

    A file that cannot be created or grown (a full disk: its space is reserved
    up front) stops this process from writing files: the failure is logged
    once, and every cell goes on counting in process only.
    """

    #: False: a fork that skips Python's hooks (uWSGI) is seen only by ``check_pid()``.
    watches_forks = False

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self._files: dict[str, _MmapFile] = {}
        self._tracked: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._failed: OSError | None = None
        _STORES.add(self)

    def _file_for(self, typ: str) -> _MmapFile:
        f = self._files.get(typ)
        if f is None:
            filename = _filename(self.directory, typ, self.pid)
            if typ.startswith("gauge_live"):
                _drop_if_dead(filename)
            f = self._files[typ] = _MmapFile(filename)
        return f

    def counter(self, key: str) -> Counter:
        """A Counter whose value is the ``key`` entry of this process' counter file."""
        cell = _MmapCounter()
        cell._key = key
        cell._store = self
        cell._file = None
        cell._m = None
        return self._track(cell)

    def gauge(self, key: str, mode: str = "all") -> Gauge:
        """A Gauge whose value is the ``key`` entry of this process' file for ``mode``.

        ``mode`` is prometheus_client's ``multiprocess_mode``; files of ``live*``
        modes are dropped once their process is gone (``multiprocess.compact``).
        """
        if mode not in _GAUGE_MODES:
            raise ValueError(f"Invalid multiprocess mode: {mode}")
        cell = _MmapGauge()
        cell._key = key
        cell._typ = "gauge_" + mode
        cell._stamp = mode in _MOST_RECENT
        cell._store = self
        cell._file = None
        cell._m = None
        return self._track(cell)

    def histogram(self, bounds: Iterable[float], bucket_keys: Iterable[str], sum_key: str) -> Histogram:
        """A Histogram whose buckets and sum are entries of this process' histogram file."""
        cell = _MmapHistogram(bounds)
        cell._bucket_keys = tuple(bucket_keys)
        cell._sum_key = sum_key
        cell._store = self
        cell._file = None
        cell._m = None
        if len(cell._bucket_keys) != len(cell.bounds):
            raise ValueError("one key per bucket is needed")
        return self._track(cell)

    def _track(self, cell: Any) -> Any:
        """Keep ``cell`` re-attachable after a fork, and give it its entries now."""
        self.check_pid()
        with self._lock:
            self._check_open()
            self._tracked.append(cell)
        self._attach(cell)  # its zero shows from now on, as prometheus_client's values do
        return cell

    def _attach(self, cell: Any) -> None:
        """Give an unwritten cell its entries in this process' file (its first write)."""
        with self._lock:
            if cell._file is not None:
                return
            if self._closed or self._failed is not None:
                cell._attach(_DETACHED)
                return
            if isinstance(cell, _MmapCounter):
                typ = "counter"
            elif isinstance(cell, _MmapGauge):
                typ = cell._typ
            else:
                typ = "histogram"
            try:
                f = self._file_for(typ)
                f.make_room(cell._keys())  # all of the cell's entries, or none
            except OSError as exc:
                self._fail(exc)
                cell._attach(_DETACHED)
                return
            cell._attach(f)

    def _fail(self, exc: OSError) -> None:
        self._failed = exc
        logging.getLogger("django_prometheus").error(
            "django_prometheus: cannot write this process' multiprocess metrics files in %s (%s); "
            "process %s counts in memory only, and its counts are missing from every scrape",
            self.directory, exc, self.pid,
        )  # fmt: skip

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this multiprocess store is closed")

    def check_pid(self) -> None:
        """Start over as a new process (no files yet) if we are in a forked child."""
        if os.getpid() != self.pid:
            self._after_fork()

    def _after_fork(self) -> None:
        if os.getpid() == self.pid:
            return  # made in this process (after the fork), or already moved
        # The parent's threads did not come along: its lock may be held forever.
        self._lock = threading.Lock()
        with self._lock:
            if self._closed or os.getpid() == self.pid:
                return
            old, self._files = self._files, {}
            self._failed = None
            self.pid = os.getpid()
            for cell in self._tracked:
                cell._reset()
                cell._lock = threading.Lock()
            for f in old.values():
                f.close()

    def files(self) -> list[str]:
        """The paths of the files this process has written so far."""
        return [_filename(self.directory, typ, self.pid) for typ in self._files]

    def close(self) -> None:
        """Detach every cell (they keep their values, in process) and close the files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cell in self._tracked:
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
