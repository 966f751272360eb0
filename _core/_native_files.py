"""This process' native histogram file in multiprocess mode (used by both native twins).

Native parts cannot live in prometheus_client's ``*.db`` files (its collector
would add bucket entries of different schemas as if they were samples), so
they have a file kind of their own, ``native_django_<pid>.native``, in the same
entry format (so the core's reader sums them): one value per key, and the key
is a JSON array ``[name, labelnames, labelvalues, kind, a, b]`` with

- ``"z", zero_threshold, 0``: the zero bucket's count;
- ``"m", schema, 0``: 1 once this process' part of the child was at ``schema``;
- ``"p", schema, key`` / ``"n", schema, key``: a positive / negative bucket's count.

An entry is never rewritten at another schema: when a part halves its
resolution, what it counted stays where it was counted and new observations go
to entries of the new schema, marked with ``"m"``. A reader brings every entry
of a child to the lowest schema marked for it (any process, dead ones
included), then adds: exactly the merge of every process' histogram, and
folding files together (compaction) only adds values, as for classic
histograms.

As the store's files: created at a process' first write, held with a shared
lock for the process' life (compaction folds only files it can lock
exclusively), never unmapped while a cell may point into a mapping, and a
forked child starts over (its cells forget the parent's counts and write files
of its own pid).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import mmap
import os
import struct
import threading
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ARCHIVE", "PREFIX", "SUFFIX", "NativeFiles", "child_prefix", "filename"]

PREFIX = "native_django_"
SUFFIX = ".native"  # never ".db": prometheus_client's MultiProcessCollector reads every *.db
ARCHIVE = PREFIX + "archive" + SUFFIX
_INITIAL_SIZE = 1 << 16
_HEAD = struct.Struct("i")


def filename(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{PREFIX}{pid}{SUFFIX}")


def child_prefix(name: str, labelnames: Any, labelvalues: Any) -> str:
    """The start of every key of one child: the rest is ``kind, a, b]`` (see the module)."""
    return json.dumps([name, list(labelnames), list(labelvalues)])[:-1] + ", "


def _reserve(f: Any, start: int, end: int) -> None:
    """Real blocks for bytes ``[start, end)`` now (zeros written where the filesystem cannot fallocate)."""
    try:
        os.posix_fallocate(f.fileno(), start, end - start)
        return
    except AttributeError:  # pragma: no cover - no posix_fallocate (macOS)
        pass
    except OSError as exc:
        if exc.errno not in _NO_FALLOCATE:
            raise
    size = os.fstat(f.fileno()).st_size  # pragma: no cover - the file is opened "a+b"
    if end > size:  # pragma: no cover
        f.write(bytes(end - size))
        f.flush()


_NO_FALLOCATE = {
    getattr(errno, n) for n in ("EOPNOTSUPP", "ENOTSUP", "EINVAL", "ENOSYS") if hasattr(errno, n)
}


def _entry(key: str) -> bytes:
    encoded = key.encode("utf-8")
    padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
    return _HEAD.pack(len(encoded)) + padded + bytes(16)


class _File:
    """One append-only file, every byte reserved before it is mapped (a full disk: OSError, no SIGBUS)."""

    def __init__(self, path: str) -> None:
        while True:
            f = open(path, "a+b")  # noqa: SIM115 - kept open (and locked) for the process' life
            if fcntl is None:  # pragma: no cover
                break
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            try:
                same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:  # (else a compaction renamed it away while we waited: open again)
                break
            f.close()
        self._f = f
        try:
            capacity = os.fstat(f.fileno()).st_size or _INITIAL_SIZE
            _reserve(f, 0, capacity)
            self.maps = [mmap.mmap(f.fileno(), capacity)]
        except BaseException:
            with contextlib.suppress(OSError):
                if os.fstat(f.fileno()).st_size == 0:
                    os.remove(path)
            f.close()
            raise
        self._capacity = capacity
        self.positions: dict[str, int] = {}
        m = self.maps[-1]
        self._used = _HEAD.unpack_from(m, 0)[0]
        if self._used == 0:
            self._used = 8
            m[0:4] = _HEAD.pack(8)
        else:  # a recycled pid: keep appending to what the earlier process left
            pos = 8
            while pos < self._used:
                n = _HEAD.unpack_from(m, pos)[0]
                key = m[pos + 4 : pos + 4 + n].decode("utf-8")
                pos += 4 + n + (8 - (n + 4) % 8)
                self.positions[key] = pos
                pos += 16

    def position(self, key: str) -> int:
        pos = self.positions.get(key)
        if pos is not None:
            return pos
        entry = _entry(key)
        end = self._used + len(entry)
        if end > self._capacity:
            capacity = self._capacity
            while end > capacity:
                capacity *= 2
            _reserve(self._f, self._capacity, capacity)
            # Earlier mappings stay: cells may point into them (same file pages).
            self.maps.append(mmap.mmap(self._f.fileno(), capacity))
            self._capacity = capacity
        m = self.maps[-1]
        m[self._used : end] = entry
        m[0:4] = _HEAD.pack(end)  # after the entry: a reader never sees half of one
        pos = self.positions[key] = end - 16
        self._used = end
        return pos


class NativeFiles:
    """This process' native histogram file in ``directory``, and the parts that write into it."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self._file: _File | None = None
        self._lock = threading.Lock()
        self._parts: list[Any] = []
        self._failed: OSError | None = None
        self._kept: list[Any] = []  # every file ever opened: cells may still point into its mappings
        _ALL.append(self)

    def track(self, part: Any) -> None:
        """``part`` (a NativeHistogram attached to this) forgets its counts after a fork."""
        with self._lock:
            self._parts.append(part)

    def slot(self, key: str) -> tuple[Any, int] | None:
        """``(mapping, offset)`` of ``key``'s value double in this process' file; None if files fail."""
        if os.getpid() != self.pid:
            self.check_pid()
        with self._lock:
            if self._failed is not None:
                return None
            try:
                if self._file is None:
                    self._file = _File(filename(self.directory, self.pid))
                    self._kept.append(self._file)
                pos = self._file.position(key)
            except OSError as exc:
                self._failed = exc
                logging.getLogger("django_prometheus").error(
                    "django_prometheus: cannot write this process' native histogram file in %s (%s); "
                    "process %s's native histogram counts are missing from every scrape",
                    self.directory, exc, self.pid,
                )  # fmt: skip
                return None
            return self._file.maps[-1], pos

    def check_pid(self) -> None:
        """Start over as a new process if we are a forked child (call once per request, as the store's)."""
        if os.getpid() != self.pid:
            self._after_fork()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # the parent's threads did not come along
        with self._lock:
            if os.getpid() == self.pid:
                return
            self.pid = os.getpid()
            self._file = None  # (its mappings stay: the parent's pages, never written again here)
            self._failed = None
            for part in self._parts:
                part._forked()


_ALL: list[NativeFiles] = []


def _after_fork_in_child() -> None:
    for files in _ALL:
        files._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
