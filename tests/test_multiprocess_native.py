"""Native histograms in multiprocess mode: workers' files, the exact merge, compaction and kill -9.

Workers write their native parts to files of their own kind
(``native_django_<pid>.native``, ``_core/_native_files.py``); a scrape brings
every process' entries of a child to the lowest schema among them and adds.
Checked against client_golang 1.14's buckets (the fixtures of
``test_core_native.py``) for three forked workers, across ``kill -9`` of
compacting processes, and (``test_multiprocess_native_servers.py``) through
gunicorn's workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django_prometheus._core import _native_py

from django_prometheus import multiprocess
from tests.test_core_native import FIXTURES, SETS, _expected, _replay

ROOT = Path(__file__).resolve().parent.parent
CELLS = "django_prometheus._core._cells_py"

# Three forked workers observe every fixture case through metrics.Histogram (families made
# before the fork, as a preloading server makes them): worker 0 the whole set, in order, as
# client_golang did; workers 1 and 2 the even and the odd observations. The merge is then at
# worker 0's schema (a part of the set never needs a coarser one), so it holds each of
# client_golang's buckets exactly twice.
FORKED = r"""
import json, os, sys
import django
from django.conf import settings

settings.configure(INSTALLED_APPS=["django_prometheus"])
django.setup()
from django_prometheus import metrics, multiprocess

fixtures = json.loads(open(sys.argv[1]).read())
sets = {name: [float(v) for v in values] for name, values in fixtures["sets"].items()}
families = []
for n, case in enumerate(fixtures["cases"]):
    labelled = case["name"] == "labelled"
    h = metrics.Histogram(
        f"fx_{n}", "A fixture case.", ["set"] if labelled else [], registry=None,
        buckets=(0.005, 0.1, 1.0, 10.0),
        native=True, native_bucket_factor=case["factor"], native_zero_threshold=float(case["zero_threshold"]),
        native_max_buckets=case["max_buckets"],
    )
    families.append((h, case))
pids = []
for worker in range(3):
    pid = os.fork()
    if pid == 0:
        for h, case in families:
            for child in case["children"]:
                cell = h.labels(child["set"]) if child["labels"] else h
                for i, v in enumerate(sets[child["set"]]):
                    if worker == 0 or i % 2 == worker - 1:
                        cell.observe(v)
        os._exit(0)
    pids.append(pid)
assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids), "a worker died"
path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
states = multiprocess.native_states(multiprocess._native_scrape_files(path))
classic = {m.name: {tuple(sorted((k, v) for k, v in s.labels.items())): s.value for s in m.samples
                    if s.name.endswith("_count")}
           for m in multiprocess.AggregateCollector(path, compact_dead=False).collect()}
print(json.dumps({
    "files": sorted(os.listdir(path)),
    "states": [[name, labels, state] for (name, labels), state in states.items()],
    "counts": [[name, labels, value] for name, by in classic.items() for labels, value in by.items()],
}))
"""


def _run_forked(tmp_path: Path) -> dict:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    fixtures = ROOT / "tests" / "fixtures" / "native_histograms_golang.json"
    out = subprocess.run(
        [sys.executable, "-c", FORKED, str(fixtures)], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_three_forked_workers_merge_bucket_exact_with_client_golang(tmp_path):
    result = _run_forked(tmp_path)
    states = {(name, tuple(map(tuple, labels))): state for name, labels, state in result["states"]}
    counts = {(name, tuple(map(tuple, labels))): value for name, labels, value in result["counts"]}
    # One native file per process that observed (and the parent's, which made the families),
    # and none of them is a *.db file prometheus_client's collector would read.
    assert len([f for f in result["files"] if f.startswith("native_django_")]) == 4
    assert not [f for f in result["files"] if f.startswith("native") and f.endswith(".db")]
    checked = 0
    for n, case in enumerate(FIXTURES["cases"]):
        for child in case["children"]:
            _, nh, moved = _replay(_native_py, __import__(CELLS, fromlist=["x"]), case, child)
            labels = (("set", child["set"]),) if child["labels"] else ()
            schema, zt, zero, pos, neg = states[f"fx_{n}", labels]
            assert schema == child["schema"], (case["name"], case["max_buckets"], child["set"])
            assert zt == float(case["zero_threshold"])
            assert zero == 2 * child["zero_count"]
            want_pos, want_neg = _expected(child, schema, moved)
            assert [tuple(b) for b in pos] == [(k, 2 * c) for k, c in want_pos]
            assert [tuple(b) for b in neg] == [(k, 2 * c) for k, c in want_neg]
            # The classic count of the same child: every worker's observations but NaN.
            nans = sum(1 for v in SETS[child["set"]] if v != v)
            assert counts[f"fx_{n}", labels] == 2 * (child["count"] - nans) == 2 * nh.count
            checked += 1
    assert checked == sum(len(case["children"]) for case in FIXTURES["cases"])


# --- Dead workers' files: compaction folds them, kill -9 at any point loses nothing -----------

WORKER = r"""
import json, sys
from django_prometheus._core import _native, _native_files
path, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import random
rnd = random.Random(seed)
files = _native_files.NativeFiles(path)
for view in range(3):
    nh = _native.NativeHistogram(3, 2.0 ** -128, 20)
    nh.attach(files, _native_files.child_prefix("lat", ["view"], [f"v{view}"]))
    for _ in range(n):
        nh.observe(rnd.choice([0.0, -1.0, 2.0 ** rnd.randint(-20, 20), rnd.lognormvariate(-3, 2)]))
"""

COMPACTOR = """
import os, signal, sys
from django_prometheus import multiprocess
crash_at, calls = int(sys.argv[2]), [0]
def crashing(real):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
for name in ("rename", "replace", "remove"):
    setattr(os, name, crashing(getattr(os, name)))
multiprocess.compact(sys.argv[1])
"""


def _workers(path: Path, seeds: range, n: int = 60) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(s), str(n)], cwd=ROOT) for s in seeds
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(procs)


def _states(path: Path) -> dict:
    return multiprocess.native_states(multiprocess._native_scrape_files(str(path)))


def _single(path: Path, seeds: range, n: int = 60) -> dict:
    """What one histogram per view, fed every worker's observations at its lowest schema, holds."""
    import random

    out = {}
    for view in range(3):
        parts = []
        for seed in seeds:
            rnd = random.Random(seed)
            for _ in range(view + 1):  # the worker's random stream, view after view
                nh = _native_py.NativeHistogram(3, 2.0**-128, 20)
                for _ in range(n):
                    v = rnd.choice([0.0, -1.0, 2.0 ** rnd.randint(-20, 20), rnd.lognormvariate(-3, 2)])
                    nh.observe(v)
            parts.append(nh.state())
        out["lat", (("view", f"v{view}"),)] = _native_py.merge_states(parts)
    return out


def test_compaction_folds_dead_workers_native_files_and_changes_no_histogram(tmp_path):
    _workers(tmp_path, range(6))
    before = _states(tmp_path)
    assert before == _single(tmp_path, range(6))  # the merge of what each process held
    assert len(list(tmp_path.glob("native_django_*.native"))) == 6
    assert multiprocess.compact(str(tmp_path)) == 6
    assert [p.name for p in tmp_path.glob("native_django_*")] == ["native_django_archive.native"]
    assert _states(tmp_path) == before
    _workers(tmp_path, range(6, 9))  # more dead workers, folded into the archive
    after = _states(tmp_path)
    assert after == _single(tmp_path, range(9))
    multiprocess.compact(str(tmp_path))
    assert _states(tmp_path) == after


def test_a_live_writers_native_file_is_not_folded(tmp_path):
    from django_prometheus._core import _native, _native_files

    files = _native_files.NativeFiles(str(tmp_path))
    nh = _native.NativeHistogram(3, 0.0, 0)
    nh.attach(files, _native_files.child_prefix("lat", [], []))
    nh.observe(1.5)
    assert multiprocess.compact(str(tmp_path)) == 0  # held with a shared lock for its whole life
    nh.observe(1.5)
    assert _states(tmp_path)["lat", ()] == (3, 0.0, 0, [(5, 2)], [])


def test_a_part_that_halved_on_its_last_observation_is_read_at_its_new_schema(tmp_path):
    # The observation that makes a part halve is counted at the old schema; the file marks
    # the new one at once, so the merge is what the process holds, not a finer histogram
    # with more buckets than the limit.
    from django_prometheus._core import _native, _native_files

    files = _native_files.NativeFiles(str(tmp_path))
    nh = _native.NativeHistogram(3, 0.0, 2)
    nh.attach(files, _native_files.child_prefix("lat", [], []))
    for v in (1.0, 2.0, 4.0):
        nh.observe(v)
    assert nh.state() == (2, 0.0, 0, [(0, 1), (4, 1), (8, 1)], [])
    assert _states(tmp_path)["lat", ()] == nh.state()


def test_kill_9_in_the_middle_of_native_compactions_never_loses_or_doubles(tmp_path):
    _workers(tmp_path, range(4))
    kills = 0
    seeds = 4
    for round_ in range(6):
        _workers(tmp_path, range(seeds, seeds + 3))  # dead workers arrive between crashes
        seeds += 3
        expected = _single(tmp_path, range(seeds))
        assert _states(tmp_path) == expected
        # 3 new files at least: 3 renames, a replace, 3 removes; a crash among them.
        crash_at = str(1 + round_ % 7)
        proc = subprocess.run([sys.executable, "-c", COMPACTOR, str(tmp_path), crash_at], cwd=ROOT)
        kills += proc.returncode == -signal.SIGKILL
        assert _states(tmp_path) == expected  # whatever state the crash left
    assert kills == 6, "a compaction was not interrupted"
    multiprocess.compact(str(tmp_path))
    assert not list(tmp_path.glob("*.nfolding")) and not list(tmp_path.glob("*.tmp"))
    assert [p.name for p in tmp_path.glob("native_django_*")] == ["native_django_archive.native"]
    assert _states(tmp_path) == _single(tmp_path, range(seeds))


def test_native_files_are_not_read_by_prometheus_clients_collector(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    _workers(tmp_path, range(2))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert generate_latest(registry) == b""  # nothing of the native files leaks into it


@pytest.mark.parametrize("setting", [False, True])
def test_native_off_writes_no_native_file(tmp_path, setting):
    script = textwrap.dedent(f"""
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=["django_prometheus"], PROMETHEUS_NATIVE_HISTOGRAMS={setting})
        django.setup()
        from django_prometheus import metrics
        h = metrics.Histogram("h", "H.", registry=None)
        h.observe(1.0)
        print(type(h._cell).__name__, h._cell.native is None)
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == str(not setting)
    assert bool(list(tmp_path.glob("native_django_*"))) is setting
