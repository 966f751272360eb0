"""The multiprocess scrape: the core's merge equals MultiProcessCollector's, and compaction loses nothing.

Files are written by both cores' stores and by prometheus_client's own
multiprocess values (users' metrics, every gauge mode), in real processes
where liveness matters; crashes are real ``kill -9`` of a compacting process.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus import multiprocess, text_format

ROOT = Path(__file__).resolve().parent.parent
LES = ["0.1", "1.0", "+Inf"]
MODES = [
    "all",
    "liveall",
    "min",
    "livemin",
    "max",
    "livemax",
    "sum",
    "livesum",
    "mostrecent",
    "livemostrecent",
]


def pids_no_process_has(n: int) -> list[int]:
    """Pids that are certainly free: above the kernel's pid_max, which no process can have.

    (Low pids are no safer than any other: kernel threads hold many of them on some boots.)
    """
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except OSError:  # not Linux: none hands out pids above Linux's own ceiling (PID_MAX_LIMIT)
        pid_max = 4_194_304
    return list(range(pid_max + 1, pid_max + 1 + n))


#: The pids of the dead processes whose prometheus_client files the tests write.
THEIR_PIDS = pids_no_process_has(10)


@pytest.fixture
def core(twin):
    return twin.cells


def write_worker(core, directory: Path, rnd: random.Random, views: int = 5) -> None:
    """One dead worker's files, written through a real store of the given core, then closed."""
    staging = directory / "staging"
    staging.mkdir(exist_ok=True)
    store = core.MultiProcessStore(str(staging))
    for v in range(views):
        for method in ("GET", "POST"):
            c = store.counter(
                mmap_key("django_c", "django_c_total", ["view", "method"], [f"v{v}", method], "c")
            )
            c.inc(rnd.randint(0, 5))
            h = store.histogram(
                (0.1, 1.0, math.inf),
                [mmap_key("django_h", "django_h_bucket", ["view", "le"], [f"v{v}", le], "h") for le in LES],
                mmap_key("django_h", "django_h_sum", ["view"], [f"v{v}"], "h"),
            )
            for _ in range(rnd.randint(0, 3)):
                h.observe(rnd.choice([0.05, 0.5, 5.0]))
    store.close()
    fake_pid = rnd.randrange(10**6, 10**7)  # a different dead "process" each time
    for typ in ("counter", "histogram"):
        os.rename(staging / f"{typ}_django_{os.getpid()}.db", directory / f"{typ}_django_{fake_pid}.db")


def write_theirs(directory: Path, pid: int, rnd: random.Random) -> None:
    """What prometheus_client's own multiprocess values write for a user's metrics."""
    for typ, key in [
        ("counter", mmap_key("user_c", "user_c_total", ["x"], ["1"], "u")),
        ("histogram", mmap_key("user_h", "user_h_bucket", ["le"], ["+Inf"], "uh")),
        ("histogram", mmap_key("user_h", "user_h_sum", [], [], "uh")),
        ("summary", mmap_key("user_s", "user_s_count", [], [], "us")),
        ("summary", mmap_key("user_s", "user_s_sum", [], [], "us")),
    ]:
        f = MmapedDict(str(directory / f"{typ}_{pid}.db"))
        f.write_value(key, f.read_value(key)[0] + rnd.randint(1, 3), 0.0)
        f.close()


def write_gauges(directory: Path) -> None:
    for mode in MODES:
        for pid in (11, 12, 13):
            f = MmapedDict(str(directory / f"gauge_{mode}_{pid}.db"))
            f.write_value(
                mmap_key(f"g_{mode}", f"g_{mode}", ["a"], ["b"], "g"),
                pid * 1.5 - 18,
                0.0 if pid == 12 else pid,
            )
            f.close()


def theirs(directory: Path, openmetrics_format: bool = False) -> bytes:
    r = CollectorRegistry()
    MultiProcessCollector(r, path=str(directory))
    return (openmetrics.generate_latest if openmetrics_format else generate_latest)(r)


def ours(directory: Path, openmetrics_format: bool = False, names=None, compact_dead: bool = False) -> bytes:
    r = CollectorRegistry()
    r.register(multiprocess.AggregateCollector(str(directory), compact_dead=compact_dead))
    return text_format.render(r, openmetrics_format, names)


def totals(body: bytes) -> dict:
    """Every sample's value; sums rounded (compaction adds the same numbers in another order)."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            value = round(s.value, 6) if s.name.endswith("_sum") else s.value
            out[s.name, tuple(sorted(s.labels.items()))] = value
    return out


@pytest.fixture
def populated(core, tmp_path):
    rnd = random.Random(5)
    for _ in range(30):
        write_worker(core, tmp_path, rnd)
    for pid in THEIR_PIDS:
        write_theirs(tmp_path, pid, rnd)
    write_gauges(tmp_path)
    return tmp_path


def by_family(body: bytes) -> list[tuple[tuple[bytes, ...], list[bytes]]]:
    """Each family's head lines in order and its sample lines, byte for byte, sorted.

    prometheus_client orders a family's samples differently across releases (0.20:
    every ``_sum`` first, then the buckets; 0.21 on: series by series); ours is one
    fixed order (``test_merge_keeps_each_series_together``), so only the lines are compared.
    """
    families: list[tuple[list[bytes], list[bytes]]] = []
    for line in body.splitlines(keepends=True):
        if line.startswith(b"# HELP ") or not families:
            families.append(([], []))
        (families[-1][0] if line.startswith(b"#") else families[-1][1]).append(line)
    return [(tuple(head), sorted(samples)) for head, samples in families]


@pytest.mark.parametrize("openmetrics_format", [False, True], ids=["text", "openmetrics"])
def test_merge_is_multiprocess_collector_line_for_line(populated, openmetrics_format):
    expected = theirs(populated, openmetrics_format)
    assert b"g_livemostrecent" in expected and b"user_s_count" in expected and b"django_h_bucket" in expected
    assert by_family(ours(populated, openmetrics_format)) == by_family(expected)


def _sorted_samples(metrics):
    return [
        (
            m.name,
            m.documentation,
            m.unit,
            m.type,
            sorted(m.samples, key=lambda s: (s.name, sorted(s.labels.items()))),
        )
        for m in metrics
    ]


def test_merge_returns_multiprocess_collector_metrics(populated):
    paths = sorted(str(p) for p in populated.glob("*.db"))
    assert _sorted_samples(multiprocess.merge(paths)) == _sorted_samples(MultiProcessCollector.merge(paths))


def test_merge_keeps_each_series_together(populated):
    # One order whatever prometheus_client's release: a histogram series' _sum, its
    # buckets in bound order, then its _count, before the next series' samples.
    paths = sorted(str(p) for p in populated.glob("*.db"))
    [h] = [m for m in multiprocess.merge(paths) if m.name == "django_h"]
    series = []
    for s in h.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        if not series or series[-1][0] != key:
            series.append((key, []))
        series[-1][1].append(s.name[len("django_h") :] + (f"[{s.labels['le']}]" if "le" in s.labels else ""))
    assert len({key for key, _ in series}) == len(series) > 1  # each series in one run
    for _, names in series:
        assert names == ["_sum", *(f"_bucket[{le}]" for le in LES), "_count"]


def test_name_filter_works_in_multiprocess_mode(populated):
    body = ours(populated, names=["django_c_total", "g_max"])
    names = {name for name, _ in totals(body)}
    assert names == {"django_c_total", "g_max"}
    full = totals(ours(populated))
    assert {k: v for k, v in full.items() if k[0] in names} == totals(body)


def test_compaction_folds_dead_workers_and_keeps_every_total(populated):
    before = totals(theirs(populated))
    ours_files = len(list(populated.glob("*_django_*.db")))
    assert multiprocess.compact(str(populated)) == ours_files  # all 60 of ours are dead (closed)
    assert sorted(p.name for p in populated.glob("*_django_*.db")) == [
        "counter_django_archive.db",
        "histogram_django_archive.db",
    ]
    assert totals(theirs(populated)) == before  # prometheus_client still reads the archive
    assert totals(ours(populated)) == before
    for pid in THEIR_PIDS:  # users' files go with mark_process_dead, for a pid no process has
        multiprocess.mark_process_dead(pid, str(populated))
    assert not [p.name for pid in THEIR_PIDS for p in populated.glob(f"*_{pid}.db")]
    assert totals(ours(populated)) == before
    assert multiprocess.compact(str(populated)) == 0


HOLD_LOW_PIDS = r"""
import os, subprocess, sys
import pytest
holders = []
for pid in range(100, 110):  # each fork takes the pid after ns_last_pid
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    holders.append(subprocess.Popen(["sleep", "600"]))
held = [p.pid for p in holders]
assert held == list(range(100, 110)), held
try:
    code = pytest.main(["-q", "-p", "no:cacheprovider", sys.argv[1]])
    assert all(p.poll() is None for p in holders), "a holder died during the run"
finally:
    for p in holders:
        p.kill()
        p.wait()
print("pids 100-109 held by live processes for the whole run")
sys.exit(code)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pid namespaces are Linux's")
def test_compaction_test_passes_while_pids_100_to_109_are_live(tmp_path):
    # A fresh pid namespace, where this test can make live processes take pids 100-109, then
    # the compaction test above runs there (issue 30: it once assumed those pids were free).
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1) to make a pid namespace")
    cmd = [unshare, "--pid", "--fork", "--mount-proc"]
    if os.geteuid() != 0:
        cmd[1:1] = ["--user", "--map-root-user"]
    target = f"{Path(__file__).relative_to(ROOT)}::test_compaction_folds_dead_workers_and_keeps_every_total"
    out = subprocess.run([*cmd, sys.executable, "-c", HOLD_LOW_PIDS, target], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    # unshare(1)'s own errors start with "unshare:" and come before Python runs: a sandbox that
    # forbids the namespace ("unshare failed: Operation not permitted") or /proc's remount (a
    # chroot, as scripts/fresh_machine.sh makes: "cannot change root filesystem propagation").
    if out.returncode != 0 and out.stderr.startswith("unshare:") and not out.stdout:
        pytest.skip(f"cannot make a pid namespace here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # Both cores on a compiled build; on a pure build the compiled case skips (tests/conftest.py).
    expected = "1 passed, 1 skipped" if os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS") else "2 passed"
    assert expected in out.stdout and "pids 100-109 held by live processes" in out.stdout


def test_a_live_pid_is_never_folded(populated):
    # prometheus_client's files of a pid that runs (ours) stay; our own files of a live store stay.
    write_theirs(populated, os.getpid(), random.Random(1))
    multiprocess.mark_process_dead(os.getpid(), str(populated))
    assert (populated / f"counter_{os.getpid()}.db").exists()
    before = totals(theirs(populated))
    multiprocess.compact(str(populated))
    assert totals(ours(populated)) == before


def run_writer(directory: Path, core: str, script: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import importlib, sys, time
        from prometheus_client.mmap_dict import mmap_key
        core = importlib.import_module({core!r})
        store = core.MultiProcessStore({str(directory)!r})
    """) + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_a_live_writer_is_not_folded_until_it_exits(tmp_path, twin):
    proc = run_writer(
        tmp_path,
        twin.module_name("cells"),
        """
        c = store.counter(mmap_key("django_live", "django_live_total", [], [], "l"))
        c.inc(3)
        print("ready", flush=True)
        sys.stdin.readline()
        c.inc(4)
    """,
    )
    with proc:
        assert proc.stdout.readline().strip() == "ready"
        assert multiprocess.compact(str(tmp_path)) == 0
        assert (tmp_path / f"counter_django_{proc.pid}.db").exists()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
    assert multiprocess.compact(str(tmp_path)) == 1
    assert totals(ours(tmp_path))[("django_live_total", ())] == 7.0


def test_a_scrape_compacts_dead_files_without_the_hook(populated):
    before = totals(theirs(populated))
    assert totals(ours(populated, compact_dead=True)) == before
    assert not [p for p in populated.glob("*_django_*.db") if "archive" not in p.name]


# A compaction that kills itself (SIGKILL, as kill -9) at its Nth rename, replace or remove:
# every crash point is reached by design, however fast the machine (no timed kill).
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


def big_dir(core, directory: Path, workers: int) -> dict:
    rnd = random.Random(workers)
    for _ in range(workers):
        write_worker(core, directory, rnd, views=20)
    return totals(theirs(directory))


def test_kill_9_in_the_middle_of_compactions_never_loses_or_doubles(core, tmp_path):
    expected = big_dir(core, tmp_path, 150)
    rnd = random.Random(9)
    kills = 0
    for _ in range(12):
        # More dead workers arrive between crashes: their counts join the expected totals.
        for _ in range(10):
            write_worker(core, tmp_path, rnd, views=20)
        expected = totals(ours(tmp_path))
        # 20 new files at least: 20 renames, a replace, 20 removes; a crash among them all.
        crash_at = str(rnd.randint(1, 41))
        proc = subprocess.run([sys.executable, "-c", COMPACTOR, str(tmp_path), crash_at], cwd=ROOT)
        kills += proc.returncode == -signal.SIGKILL
        assert totals(ours(tmp_path)) == expected  # whatever state the crash left
    assert kills == 12, "a compaction was not interrupted"
    multiprocess.compact(str(tmp_path))
    assert not list(tmp_path.glob("*.folding")) and not list(tmp_path.glob("*.tmp"))
    assert totals(ours(tmp_path)) == totals(theirs(tmp_path)) == expected


def test_scrapes_racing_two_compactors_see_exact_totals(core, tmp_path):
    expected = big_dir(core, tmp_path, 200)
    seen, stop = [], threading.Event()

    def scrape() -> None:
        while True:  # once at least, whenever the thread gets to run
            seen.append(totals(ours(tmp_path)) == expected)
            if stop.is_set():
                return

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", COMPACTOR, str(tmp_path), "0"], cwd=ROOT)
            for _ in range(2)
        ]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    finally:
        stop.set()
        scraper.join()
    assert seen and all(seen), f"{seen.count(False)} of {len(seen)} scrapes saw other totals"
    assert totals(ours(tmp_path)) == expected
    assert len(list(tmp_path.glob("counter_django_*.db"))) == 1


def test_forked_children_that_do_not_count_leave_no_file(tmp_path):
    script = textwrap.dedent("""
        import multiprocessing, os, subprocess, sys
        import django
        from django.conf import settings
        settings.configure()
        from django_prometheus import metrics
        c = metrics.Counter("django_fork_total", "f", ["who"])
        c.labels("parent").inc()
        for _ in range(20):
            subprocess.run(["true"], preexec_fn=lambda: None, check=True)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(abs, range(10))
        before = sorted(os.listdir(sys.argv[1]))
        pid = os.fork()
        if pid == 0:
            c.labels("child").inc(5)
            os._exit(0)
        os.waitpid(pid, 0)
        after = sorted(os.listdir(sys.argv[1]))
        print(all(name.endswith(f"_{os.getpid()}.db") for name in before), len(before), len(after))
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    only_parent, before, after = out.stdout.split()
    assert only_parent == "True" and int(before) >= 1  # 20 subprocesses, a fork and a pool: no file
    assert int(after) == int(before) + 1  # the child that counted: its own counter file
    samples = totals(ours(tmp_path))
    assert samples[("django_fork_total", (("who", "parent"),))] == 1.0
    assert samples[("django_fork_total", (("who", "child"),))] == 5.0


@pytest.mark.parametrize("held", ["compaction", "scrape"])
def test_a_child_forked_while_the_directory_is_locked_does_not_keep_it_locked(tmp_path, held):
    # A Celery prefork worker forks its pool while its exporter thread may be scraping or
    # compacting; with the lock only closed, the child's copy of the descriptor kept it, and
    # every later scrape of the worker's port waited for it forever.
    script = textwrap.dedent("""
        import fcntl, os, sys
        from django.conf import settings
        settings.configure()
        from django_prometheus import multiprocess
        path, how = sys.argv[1], fcntl.LOCK_EX if sys.argv[2] == "compaction" else fcntl.LOCK_SH
        r, w = os.pipe()
        with multiprocess._dir_lock(path, how) as locked:
            assert locked
            pid = os.fork()
            if pid == 0:  # a pool child, alive until told
                os.close(w)
                os.read(r, 1)
                os._exit(0)
        with multiprocess._dir_lock(path, fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
            print("free" if free else "still locked")
        if free:
            multiprocess.AggregateCollector(path).collect()  # a scrape (it waited forever before)
        os.write(w, b"x")
        os.waitpid(pid, 0)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), held], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.stdout.split() == ["free"]


def test_a_missing_multiprocess_directory_says_what_to_do(tmp_path):
    missing = tmp_path / "nope"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(missing)}
    script = "from django.conf import settings; settings.configure(); import django_prometheus.metrics"
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr
    assert (
        f"PROMETHEUS_MULTIPROC_DIR is set, but the directory it names ('{missing}') does not exist"
        in out.stderr
    )
    assert f"mkdir -p {missing}" in out.stderr
    assert "FileNotFoundError" not in out.stderr


@pytest.mark.parametrize("openmetrics_format", [False, True], ids=["text", "openmetrics"])
def test_the_core_writes_the_merge_as_prometheus_client_writes_it(populated, openmetrics_format):
    # The merge's metrics, written by the core's writer (text_format.render), are the bytes
    # prometheus_client's writer makes of the very same metrics: ugly values, created and
    # UTF-8 names included (those go to prometheus_client's writer, in their place).
    ugly = [
        ("counter", mmap_key("u_c", "u_c_total", ["a", "B"], ['q"\\\n', "é ☃"], 'Help "q" \\ \n.')),
        ("counter", mmap_key("u_c", "u_c_created", ["a", "B"], ["x", "y"], 'Help "q" \\ \n.')),
        ("counter", mmap_key("u.utf8", "u.utf8_total", ["x"], ["1"], "UTF-8 name.")),
        ("gauge_all", mmap_key("u_g", "u_g", [], [], "No labels.")),
    ]
    for typ, key in ugly:
        f = MmapedDict(str(populated / f"{typ}_4242.db"))
        f.write_value(key, 1e21 if "created" in key else 3.5, 0.0)
        f.close()
    r = CollectorRegistry()
    r.register(multiprocess.AggregateCollector(str(populated), compact_dead=False))
    writer = openmetrics.generate_latest if openmetrics_format else generate_latest
    assert text_format.render(r, openmetrics_format) == writer(r)
    assert text_format.render(r, openmetrics_format, escaping="allow-utf-8") == writer(
        r, escaping="allow-utf-8"
    )
    # (prometheus_client's restricted registry would drop the aggregate: it has no describe())
    names = ["django_h_bucket", "u_c_created", "g_all"]
    restricted = CollectorRegistry()
    restricted.register(_Restricted(r, names))
    assert text_format.render(r, openmetrics_format, names) == writer(restricted)
    assert b"django_h_bucket" in writer(restricted) and b"django_c" not in writer(restricted)


class _Restricted:
    def __init__(self, registry, names):
        self.registry, self.names = registry, frozenset(names)

    def collect(self):
        for metric in self.registry.collect():
            restricted = metric._restricted_metric(self.names)
            if restricted is not None:
                yield restricted
