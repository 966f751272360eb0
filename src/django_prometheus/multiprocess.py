"""Multiprocess mode: every process' values from the multiprocess directory, and dead workers compacted.

``AggregateCollector`` is what the view and the single export port serve: the
sum (or min, max, ... per gauge ``multiprocess_mode``) of every process'
files, the same samples in the same order as prometheus_client's
``MultiProcessCollector``, read by the core (``_core._expo.scan``).

``mark_process_dead(pid)`` (gunicorn's ``child_exit`` hook) also folds a dead
worker's counters, histograms and summaries into one archive file per type
and removes the worker's files, so a scrape's cost stops growing with every
worker ever recycled, and drops the files of its live gauges. Scrapes do the
same for our own files without the hook. See ``compact()`` for why that is safe.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import struct
import uuid
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import multiprocess as _pc_multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from django_prometheus._core import _expo, _native, _native_files

__all__ = ["AggregateCollector", "CompactionError", "compact", "mark_process_dead", "merge"]

_logger = logging.getLogger("django_prometheus")

_LOCK_NAME = "django_prometheus.lock"
_ARCHIVE = "{typ}_django_archive.db"
_FOLDABLE = ("counter", "histogram", "summary")  # summed per key: folding them changes no total
_TRAILER = b"DJPROMARCHIVE1\n"  # after the "used" bytes, where prometheus_client never reads
_HEAD = struct.Struct("i")
_GAUGE_SUFFIX = ".db_django.db"  # our gauge files: gauge_<mode>_<pid>.db_django.db (the core's names)


# --- Reading: the same merge as prometheus_client's MultiProcessCollector ------------


class _Conflict(Exception):
    """One metric name in files of different kinds: let prometheus_client decide what that means."""


class _Family:
    __slots__ = ("buckets", "doc", "groups", "mode", "name", "typ")

    def __init__(self, name: str, doc: str, typ: str) -> None:
        self.name, self.doc, self.typ = name, doc, typ
        self.mode = ""
        self.groups: dict[tuple, dict[tuple, int]] = {}  # labels -> (sample name, labels) -> target
        self.buckets: dict[tuple, dict[float, int]] = {}  # labels without le -> bound -> target


class _Merge:
    """One scrape's merge: resolves each distinct key once, the core sums the values."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.kinds = []
        for path in paths:
            parts = os.path.basename(path).split("_")
            typ = parts[0]
            if typ == "gauge":
                self.kinds.append((typ, parts[1], parts[2][:-3] if len(parts) > 2 else ""))
            else:
                self.kinds.append((typ, "", ""))
        self.families: dict[str, _Family] = {}
        self.targets = 0
        self.gauge_keys: list[tuple[_Family, str, tuple]] = []
        self._parsed: dict[str, tuple] = {}

    def _family(self, key: str, typ: str) -> tuple[_Family, str, tuple]:
        parsed = self._parsed.get(key)
        if parsed is None:
            metric_name, name, labels, doc = json.loads(key)
            parsed = self._parsed[key] = (metric_name, name, tuple(sorted(labels.items())), doc)
        metric_name, name, labels_key, doc = parsed
        family = self.families.get(metric_name)
        if family is None:
            family = self.families[metric_name] = _Family(metric_name, doc, typ)
        if (family.typ == "gauge") != (typ == "gauge"):
            raise _Conflict(metric_name)
        return family, name, labels_key

    def resolve(self, key: str, index: int) -> int:
        typ = self.kinds[index][0]
        family, name, labels_key = self._family(key, typ)
        if typ == "gauge":
            self.gauge_keys.append((family, name, labels_key))
            return len(self.gauge_keys) - 1
        if family.typ == "histogram":
            for label, value in labels_key:
                if label == "le":
                    without_le = tuple(kv for kv in labels_key if kv[0] != "le")
                    return self._target(family.buckets.setdefault(without_le, {}), float(value))
        return self._target(family.groups.setdefault(labels_key, {}), (name, labels_key))

    def _target(self, slots: dict, key: Any) -> int:
        target = slots.get(key)
        if target is None:
            target = slots[key] = self.targets
            self.targets += 1
        return target

    def metrics(self) -> list[Metric]:
        sums, gauge_entries = _expo.scan(self.paths, [k[0] == "gauge" for k in self.kinds], self.resolve)
        gauge_samples = self._gauges(gauge_entries)
        out = []
        for family in self.families.values():
            metric = Metric(family.name, family.doc, family.typ)
            if family.typ == "gauge":
                metric._multiprocess_mode = family.mode  # type: ignore[attr-defined]
                groups = gauge_samples.get(family.name, {})
            else:
                groups = {
                    labels: {k: sums[t] for k, t in slots.items()} for labels, slots in family.groups.items()
                }
                for labels, bounds in family.buckets.items():
                    group = groups.setdefault(labels, {})
                    acc = 0.0
                    for bound, target in sorted(bounds.items()):
                        acc += sums[target]
                        group[family.name + "_bucket", (*labels, ("le", floatToGoString(bound)))] = acc
                    group[family.name + "_count", labels] = acc
            metric.samples = [
                Sample(name, dict(labels), value)
                for group in groups.values()
                for (name, labels), value in group.items()
            ]
            out.append(metric)
        return out

    def _gauges(self, entries: list[tuple[int, int, float, float]]) -> dict[str, dict[tuple, dict]]:
        # The mode of a gauge family is that of the last file it was read from.
        for target, index, _, _ in entries:
            self.gauge_keys[target][0].mode = self.kinds[index][1]
        out: dict[str, dict[tuple, dict]] = {}
        stamps: dict[tuple, float] = {}
        for target, index, value, timestamp in entries:
            family, name, labels = self.gauge_keys[target]
            mode = family.mode
            if mode in ("all", "liveall") or mode not in _GAUGE_MODES:
                labels = (*labels, ("pid", self.kinds[index][2]))
            group = out.setdefault(family.name, {}).setdefault(labels, {})
            key = (name, labels)
            if mode in ("min", "livemin"):
                if value < group.setdefault(key, value):
                    group[key] = value
            elif mode in ("max", "livemax"):
                if value > group.setdefault(key, value):
                    group[key] = value
            elif mode in ("sum", "livesum"):
                group[key] = group.get(key, 0.0) + value
            elif mode in ("mostrecent", "livemostrecent"):
                stamp = float(timestamp or 0)
                if stamps.get((family.name, labels, name), 0.0) < stamp:
                    group[key] = value
                    stamps[family.name, labels, name] = stamp
            else:
                group[key] = value
        return out


_GAUGE_MODES = ("min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent")


def merge(paths: list[str]) -> list[Metric]:
    """``MultiProcessCollector.merge(paths)``, read by the core: the same metrics, samples and order."""
    try:
        return _Merge(paths).metrics()
    except _Conflict:  # pragma: no cover - one name, two kinds of file: prometheus_client's rules
        return list(_pc_multiprocess.MultiProcessCollector.merge(paths, accumulate=True))


def _scrape_files(path: str) -> list[str]:
    """The files a scrape reads: prometheus_client's glob, plus folds a crash left unfinished."""
    paths = glob.glob(os.path.join(path, "*.db"))
    for folding in glob.glob(os.path.join(path, "*.folding")):
        typ = os.path.basename(folding).split("_", 1)[0]
        if os.path.basename(folding) not in _absorbed(os.path.join(path, _ARCHIVE.format(typ=typ))):
            paths.append(folding)
    return paths


# --- Native histograms: their own files (``_core/_native_files.py`` says what is in them) --------


def _native_scrape_files(path: str) -> list[str]:
    """Every native file of ``path`` (the archive included), plus folds a crash left unfinished."""
    paths = glob.glob(os.path.join(path, f"{_native_files.PREFIX}*{_native_files.SUFFIX}"))
    folding = glob.glob(os.path.join(path, f"{_native_files.PREFIX}*{_NATIVE_FOLDING}"))
    if folding:
        done = _absorbed(os.path.join(path, _native_files.ARCHIVE))
        paths += [f for f in folding if os.path.basename(f) not in done]
    return paths


def native_states(paths: list[str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple]:
    """``(family name, sorted labels) -> (schema, zero_threshold, zero_count, positive, negative)``.

    Every process' entries of a child brought to the lowest schema marked for it,
    then added (``merge_states``): the merge of every process' native histogram.
    A child whose processes disagree on the zero threshold (a changed setting
    between deploys) has no exact merge: it is left out (its classic buckets stay).
    """
    keys: list[str] = []

    def resolve(key: str, index: int) -> int:
        keys.append(key)
        return len(keys) - 1

    sums, _ = _expo.scan(paths, [False] * len(paths), resolve)
    children: dict[tuple, dict[str, Any]] = {}
    for key, total in zip(keys, sums, strict=False):
        try:
            name, labelnames, labelvalues, kind, a, b = json.loads(key)
            ident = (name, tuple(sorted(zip(labelnames, labelvalues, strict=True))))
        except (ValueError, TypeError):  # not an entry of ours: skipped
            continue
        child = children.get(ident)
        if child is None:
            child = children[ident] = {"m": set(), "z": {}, "p": {}, "n": {}}
        if kind == "m":
            if total > 0:
                child["m"].add(int(a))
        elif kind == "z":
            child["z"][float(a)] = child["z"].get(float(a), 0.0) + total
        elif kind in ("p", "n") and total > 0:
            side = child[kind].setdefault(int(a), {})
            side[int(b)] = side.get(int(b), 0.0) + total
    out = {}
    for ident, child in children.items():
        schemas = child["m"] | set(child["p"]) | set(child["n"])
        if len(child["z"]) != 1 or not schemas:
            continue
        ((zt, zero),) = child["z"].items()
        states = [
            (s, zt, 0, sorted(child["p"].get(s, {}).items()), sorted(child["n"].get(s, {}).items()))
            for s in sorted(schemas)
        ]
        states.append((min(schemas), zt, int(zero), [], []))
        out[ident] = _native.merge_states(states)
    return out


def _attach_native(metrics: list[Metric], states: dict[tuple, tuple]) -> None:
    """Give each histogram family its children's merged native parts (the protobuf writer reads them)."""
    by_name: dict[str, dict[tuple, tuple]] = {}
    for (name, labels), state in states.items():
        by_name.setdefault(name, {})[labels] = state
    for metric in metrics:
        if metric.type == "histogram" and metric.name in by_name:
            metric._native_states = by_name[metric.name]  # type: ignore[attr-defined]


class AggregateCollector:
    """Every process' metrics from the files of ``path`` (a drop-in for ``MultiProcessCollector``).

    Scrapes hold a shared lock on the directory, compactions an exclusive one,
    so a scrape sees the files either before or after a compaction.
    """

    def __init__(self, path: str, compact_dead: bool = True) -> None:
        if not path or not os.path.isdir(path):
            raise ValueError(f"the multiprocess directory {path!r} is not a directory")
        self._path = path
        self._compact_dead = compact_dead

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        if self._compact_dead:
            # Without a mark_process_dead hook, dead workers' files of ours are folded here;
            # a scrape never waits for that: if another scrape or compaction runs, it skips.
            try:
                compact(self._path, blocking=False)
                _scrape_failures.clear()
            except Exception as exc:  # a scrape never fails because of it (CompactionError says why)
                # Once per kind of failure until one succeeds: a full disk fails every scrape.
                key = (self._path, type(exc), getattr(exc.__cause__ or exc, "errno", None))
                first = key not in _scrape_failures
                _scrape_failures.add(key)
                _logger.log(
                    logging.WARNING if first else logging.DEBUG,
                    "django_prometheus: compacting %s at scrape time failed: %s",
                    self._path,
                    exc,
                    exc_info=first,
                )
        with _dir_lock(self._path, fcntl.LOCK_SH):
            metrics = merge(_scrape_files(self._path))
            native_paths = _native_scrape_files(self._path)  # none unless native histograms are on
            if native_paths:
                _attach_native(metrics, native_states(native_paths))
            return metrics

    def _expo_metrics(self) -> list[Metric]:
        """The exporters' fast path (``text_format.render``): these metrics, written by the core's writer."""
        return self.collect()


def aggregate_registry(path: str) -> CollectorRegistry:
    """A registry that serves every process' values from the multiprocess directory ``path``."""
    registry = CollectorRegistry()
    registry.register(AggregateCollector(path))
    return registry


_scrape_failures: set[tuple] = set()


# --- Compaction ----------------------------------------------------------------------


class CompactionError(Exception):
    """A compaction failed (``__cause__`` says why); ``left`` names the files it left renamed.

    Every file it had set aside and not folded is back under its own name,
    except those in ``left`` (``*.folding``: the name was taken again, or the
    filesystem refused the link): the view and export ports count those, and
    the next compaction folds them. No count is lost or counted twice.
    """

    def __init__(self, path: str, cause: BaseException, left: list[str]) -> None:
        self.path, self.left = path, left
        if left:
            where = (
                f"{len(left)} file(s) stay renamed in {path} ({', '.join(left[:5])}"
                f"{', ...' if len(left) > 5 else ''}): the view and the export ports count them, "
                "prometheus_client's MultiProcessCollector does not, and the next compaction folds them"
            )
        else:
            where = "every file it had set aside and not folded is back under its own name"
        super().__init__(f"{cause!r}; {where}")


@contextlib.contextmanager
def _dir_lock(path: str, how: int) -> Iterator[bool]:
    """Hold the directory's lock (shared: scrapes; exclusive: compactions); yields False if busy (LOCK_NB)."""
    try:
        fd = os.open(os.path.join(path, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only directory: nothing can compact it either
        yield not how & fcntl.LOCK_EX
        return
    try:
        fcntl.flock(fd, how)
    except BaseException as exc:
        os.close(fd)
        if not isinstance(exc, BlockingIOError):
            raise
        yield False
        return
    try:
        yield True
    finally:
        _release(fd)


def _release(fd: int) -> None:
    """Unlock, then close: closing alone is not enough.

    An flock belongs to the open file, which a process forked meanwhile shares
    through its copy of the descriptor (a Celery prefork pool or a gunicorn
    worker started while this process' exporter thread scrapes or compacts).
    The copy keeps the lock for the child's whole life, and then every later
    scrape waits for the directory's lock forever. Unlocking frees it for all
    copies.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _absorbed(archive: str) -> frozenset[str]:
    """The names of the ``.folding`` files already folded into ``archive`` (its trailer)."""
    try:
        with open(archive, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return frozenset()
    if len(data) < 8:
        return frozenset()
    used = _HEAD.unpack_from(data, 0)[0]
    trailer = data[used:]
    if not trailer.startswith(_TRAILER):
        return frozenset()
    end = trailer.find(b"\n", len(_TRAILER))
    try:
        return frozenset(json.loads(trailer[len(_TRAILER) : end if end >= 0 else None]))
    except ValueError:
        return frozenset()


def _write_archive(path: str, values: dict[str, float], absorbed: list[str]) -> None:
    """Write ``values`` in prometheus_client's format, then the trailer, to ``path`` + a temp name; rename."""
    body = bytearray(8)
    for key, value in values.items():
        encoded = key.encode("utf-8")
        padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
        body += _HEAD.pack(len(encoded)) + padded + struct.pack("dd", value, 0.0)
    _HEAD.pack_into(body, 0, len(body))
    body += _TRAILER + json.dumps(sorted(absorbed)).encode() + b"\n"
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:  # (no fsync: a killed process' writes are in the page cache anyway)
            f.write(body)
    except BaseException:  # a full disk: give the space back now, not at the next compaction
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    os.replace(tmp, path)  # the commit: the archive and what it absorbed, in one step


def _try_lock_dead(path: str) -> int | None:
    """An fd holding an exclusive lock on ``path``, if no live process holds it; else None."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def compact(path: str, pid: int | None = None, blocking: bool = True) -> int:
    """Fold dead processes' counter, histogram and summary files into one archive per type.

    Ours (``*_django_<pid>.db``): a live writer holds a lock on its file for
    its whole life, so a file we can lock exclusively belongs to no living
    process, whatever its pid. prometheus_client's own files (users' metrics,
    ``counter_<pid>.db``) carry no lock: they are folded only for ``pid``
    (given by ``mark_process_dead``), only if no process has that pid any
    more, checked after the files have been renamed out of its way (a process
    that reuses the pid later creates a new file; one that had opened it
    before is still alive at the check, and the files are put back).

    Crash safety (kill -9 at any point): files to fold are first renamed to
    ``<name>.<token>.folding`` (scrapes of this module still read them); the
    new archive, written to a temporary name, records the ``.folding`` names
    it absorbed after the bytes prometheus_client reads, and replaces the old
    archive with one rename, the commit; only then are the ``.folding`` files
    removed. An interrupted compaction is finished by the next one. Two
    compactors, or a compactor and a scrape, are serialised by a lock on the
    directory (``blocking=False``: give up at once if it is taken). Returns
    the number of files folded.

    A fold that fails (a full disk cannot hold the new archive) puts the files
    it had set aside back under their own names and raises ``CompactionError``.

    Live gauges (``live*`` modes) are not folded: the files of ours that no
    live process holds are removed, so a dead worker's in-flight requests stop
    counting (prometheus_client's ``mark_process_dead`` does the same for its
    own files of the pid it is given).
    """
    folded = 0
    with _dir_lock(path, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB) as locked:
        if not locked:
            return 0
        for stale in glob.glob(os.path.join(path, "*_django_archive.db.*.tmp")):
            with contextlib.suppress(FileNotFoundError):  # a compactor died writing it: never committed
                os.remove(stale)
        _drop_dead_live_gauges(path)
        while True:  # in batches: each holds one descriptor per file it folds
            held: list[int] = []
            try:
                try:
                    candidates, more = _candidates(path, pid, held)
                    for typ in _FOLDABLE:
                        folded += _fold_type(path, typ, candidates.get(typ, []))
                except Exception as exc:
                    raise CompactionError(path, exc, _put_back(path)) from exc
            finally:
                for fd in held:
                    _release(fd)
            if not more:
                return folded + _compact_native(path)
            pid = None  # prometheus_client's files of that pid went in the first batch
    return folded


_BATCH = 256


def _drop_dead_live_gauges(path: str) -> int:
    """Remove our live-gauge files that no live process holds; return how many."""
    dropped = 0
    for name in os.listdir(path):
        if not (name.startswith("gauge_live") and name.endswith(_GAUGE_SUFFIX)):
            continue
        filename = os.path.join(path, name)
        fd = _try_lock_dead(filename)
        if fd is None:
            continue
        try:  # (a writer of that pid opening it now waits for our lock, then sees it gone)
            if os.stat(filename).st_ino == os.fstat(fd).st_ino:
                os.remove(filename)
                dropped += 1
        except FileNotFoundError:
            pass
        finally:
            _release(fd)
    return dropped


def _put_back(path: str) -> list[str]:
    """After a failed fold: ``.folding`` files no archive absorbed go back under their own names.

    A link, then the ``.folding`` name removed: a file that took the name since
    (a new process of that pid) is never replaced. Returns the names left.
    """
    absorbed = {typ: _absorbed(os.path.join(path, _ARCHIVE.format(typ=typ))) for typ in _FOLDABLE}
    left = []
    for name in sorted(os.listdir(path)):
        if not name.endswith(".folding") or name in absorbed.get(name.split("_", 1)[0], ()):
            continue  # (an absorbed one is only waiting to be removed)
        original = name.split(".", 1)[0] + ".db"
        try:
            os.link(os.path.join(path, name), os.path.join(path, original))
        except OSError:
            left.append(name)
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(path, name))
    return left


def _candidates(path: str, pid: int | None, held: list[int]) -> tuple[dict[str, list[str]], bool]:
    """Rename up to _BATCH dead processes' files to ``.folding`` names; return them per type, and
    whether more may be left."""
    token = uuid.uuid4().hex[:12]
    out: dict[str, list[str]] = {}
    theirs = []
    more = False
    for name in sorted(os.listdir(path)):
        if len(held) >= _BATCH:
            more = True
            break
        if not name.endswith(".db"):
            continue
        parts = name[:-3].split("_")
        typ = parts[0]
        if typ not in _FOLDABLE:
            continue
        if len(parts) == 3 and parts[1] == "django" and parts[2].isdigit():
            fd = _try_lock_dead(os.path.join(path, name))
            if fd is None:
                continue
            held.append(fd)  # keeps a reused pid's new writer waiting until we are done
            folding = f"{name}.{token}.folding"
            os.rename(os.path.join(path, name), os.path.join(path, folding))
            out.setdefault(typ, []).append(folding)
        elif pid is not None and len(parts) == 2 and parts[1] == str(pid):
            theirs.append((typ, name))
    if theirs:
        renamed = []
        for typ, name in theirs:
            folding = f"{name}.{token}.folding"
            with contextlib.suppress(FileNotFoundError):
                os.rename(os.path.join(path, name), os.path.join(path, folding))
                renamed.append((typ, name, folding))
        if _pid_alive(pid):  # type: ignore[arg-type]  # reused already: put its files back
            for _, name, folding in renamed:
                os.rename(os.path.join(path, folding), os.path.join(path, name))
        else:
            for typ, _, folding in renamed:
                out.setdefault(typ, []).append(folding)
    return out, more


def _fold_type(path: str, typ: str, new: list[str]) -> int:
    archive = os.path.join(path, _ARCHIVE.format(typ=typ))
    done = _absorbed(archive)
    pending = set(new)
    for folding in glob.glob(os.path.join(path, f"{typ}_*.folding")):
        name = os.path.basename(folding)
        if name in done:  # folded by a compaction that died before removing it
            with contextlib.suppress(FileNotFoundError):
                os.remove(folding)
        elif name not in pending and not _ours(name) and _left_by_live_pid(path, name):
            continue  # a compaction died between renaming and its liveness check: put back
        else:
            pending.add(name)
    if not pending:
        return 0
    keys: dict[str, int] = {}

    def resolve(key: str, index: int) -> int:  # every distinct key its own sum
        return keys.setdefault(key, len(keys))

    paths = [archive, *(os.path.join(path, name) for name in sorted(pending))]
    sums, _ = _expo.scan(paths, [False] * len(paths), resolve)
    _write_archive(archive, {key: sums[target] for key, target in keys.items()}, sorted(pending))
    for name in pending:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(path, name))
    return len(pending)


_NATIVE_FOLDING = ".nfolding"  # not ".folding": the classic folds' globs must never meet these


def _compact_native(path: str) -> int:
    """Fold dead processes' native histogram files into the native archive (``compact``'s steps).

    The same crash-safe protocol as the classic folds: rename to
    ``<name>.<token>.nfolding`` (scrapes read those), write the new archive,
    which records what it absorbed, to a temporary name and rename it over the
    old one (the commit), then remove what it absorbed. Entries only add up
    (see ``_core/_native_files.py``), so folding changes no merged histogram.
    Called with the directory's exclusive lock held.
    """
    archive = os.path.join(path, _native_files.ARCHIVE)
    for stale in glob.glob(archive + ".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    done = _absorbed(archive)
    token = uuid.uuid4().hex[:12]
    pending: list[str] = []
    held: list[int] = []
    try:
        for name in sorted(os.listdir(path)):
            if not name.startswith(_native_files.PREFIX):
                continue
            if name.endswith(_NATIVE_FOLDING):
                if name in done:  # folded by a compaction that died before removing it
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(path, name))
                else:
                    pending.append(name)
            elif name.endswith(_native_files.SUFFIX) and name != _native_files.ARCHIVE:
                fd = _try_lock_dead(os.path.join(path, name))
                if fd is None:  # a live process writes it
                    continue
                held.append(fd)
                folding = f"{name}.{token}{_NATIVE_FOLDING}"
                os.rename(os.path.join(path, name), os.path.join(path, folding))
                pending.append(folding)
        if not pending:
            return 0
        keys: dict[str, int] = {}

        def resolve(key: str, index: int) -> int:
            return keys.setdefault(key, len(keys))

        paths = [archive, *(os.path.join(path, name) for name in pending)]
        sums, _ = _expo.scan(paths, [False] * len(paths), resolve)
        try:
            _write_archive(archive, {key: sums[target] for key, target in keys.items()}, sorted(pending))
        except Exception as exc:  # the .nfolding files stay: scrapes count them, the next fold takes them
            raise CompactionError(path, exc, sorted(pending)) from exc
        for name in pending:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(path, name))
        return len(pending)
    finally:
        for fd in held:
            os.close(fd)


def _ours(folding: str) -> bool:
    parts = folding.split(".", 1)[0].split("_")
    return len(parts) == 3 and parts[1] == "django"


def _left_by_live_pid(path: str, folding: str) -> bool:
    original = folding.split(".", 1)[0] + ".db"
    pid = original[:-3].split("_")[-1]
    if not pid.isdigit() or not _pid_alive(int(pid)):
        return False
    with contextlib.suppress(OSError):
        if not os.path.exists(os.path.join(path, original)):
            os.rename(os.path.join(path, folding), os.path.join(path, original))
    return True


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """prometheus_client's ``mark_process_dead`` (its live gauges go), then compact dead workers' files.

    For gunicorn's ``child_exit`` hook and uWSGI's equivalent; never raises
    because of the compaction (a failure is logged, saying where the files are:
    see ``CompactionError``).
    """
    if path is None:
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", os.environ.get("prometheus_multiproc_dir"))
    _pc_multiprocess.mark_process_dead(pid, path)
    if not path:
        return
    try:
        compact(path, pid)
    except Exception as exc:  # the hook runs in the server's master: never take it down
        _logger.error(
            "django_prometheus: compacting %s after process %s exited failed: %s",
            path,
            pid,
            exc,
            exc_info=True,
        )
