"""A full multiprocess directory, for real: a small tmpfs mounted for the test and filled up.

The files are memory-mapped; their space is reserved when they are created or
grow, so a full disk is an OSError at a known point (logged once, the process
goes on counting in memory) and never a SIGBUS at a write. Writers run in
subprocesses, so a SIGBUS would show as their exit status instead of killing
pytest. A compaction that cannot write its archive puts the files back.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from django_prometheus import multiprocess
from tests.test_multiprocess_scrape import CORES, THEIR_PIDS, ours, theirs, totals, write_theirs, write_worker

ROOT = Path(__file__).resolve().parent.parent
LOG_LINE = "cannot write this process' multiprocess metrics files"


def mount_tmpfs(where: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` on ``where``, or skip: only root (CAP_SYS_ADMIN) may."""
    where.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {out.stderr.strip()}")


def unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path) -> Path:
    """Take every free byte of ``where``'s filesystem with one file; return it (remove it to free)."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        chunk = bytes(1 << 16)
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    assert os.statvfs(where).f_bavail == 0
    return filler


@pytest.fixture
def small_fs(tmp_path):
    where = tmp_path / "fs"
    mount_tmpfs(where, "1m")
    yield where
    unmount(where)


def run_core(core: str, directory: Path, script: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import importlib
        from prometheus_client.mmap_dict import mmap_key
        core = importlib.import_module({core!r})
        store = core.MultiProcessStore({str(directory)!r})
    """) + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("core", CORES, ids=["compiled", "pure"])
def test_a_full_disk_is_one_logged_error_and_counting_goes_on_in_memory(small_fs, core):
    fill(small_fs)
    out = run_core(
        core,
        small_fs,
        """
        c = store.counter(mmap_key("django_c", "django_c_total", [], [], "c"))
        les = ("1.0", "+Inf")
        h = store.histogram((1.0, float("inf")),
                            [mmap_key("django_h", "django_h_bucket", ["le"], [le], "h") for le in les],
                            mmap_key("django_h", "django_h_sum", [], [], "h"))
        g = store.gauge(mmap_key("django_g", "django_g", [], [], "g"), "livesum")
        for _ in range(100):
            c.inc()
            h.observe(0.5)
            g.inc()
        g.dec(40)
        assert (c.get(), h.count, h.sum, g.get()) == (100.0, 100.0, 50.0, 60.0)
        print("served")
        """,
    )
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])  # -7 was SIGBUS
    assert out.stdout.strip() == "served"
    assert out.stderr.count(LOG_LINE) == 1, out.stderr
    assert "No space left on device" in out.stderr
    assert sorted(os.listdir(small_fs)) == ["filler"]  # no empty file for readers to trip on


@pytest.mark.parametrize("core", CORES, ids=["compiled", "pure"])
def test_a_file_that_cannot_grow_keeps_its_entries_counting(tmp_path, core):
    where = tmp_path / "fs"
    mount_tmpfs(where, "96k")  # the first 64 KiB of a file fit, its growth to 128 KiB does not
    try:
        out = run_core(
            core,
            where,
            """
            name = "django_" + "x" * 80
            key = lambda i: mmap_key(name, name + "_total", ["i"], [str(i)], "c")
            cells = [store.counter(key(i)) for i in range(1500)]  # ~230 bytes each: growth at ~280
            for c in cells:
                c.inc(2)
            cells[0].inc(5)  # an entry in the reserved part: still written to the file
            assert [c.get() for c in cells[:1] + cells[-1:]] == [7.0, 2.0]
            print("served")
            """,
        )
        assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
        assert out.stderr.count(LOG_LINE) == 1, out.stderr
        (name,) = os.listdir(where)
        values = {k: v for k, v, *_ in MmapedDict.read_all_values_from_file(str(where / name))}
        assert 100 < len(values) < 1500  # the entries that fit, every one readable
        first = mmap_key("django_" + "x" * 80, "django_" + "x" * 80 + "_total", ["i"], ["0"], "c")
        assert values[first] == 7.0
        assert set(values.values()) == {2.0, 7.0}
    finally:
        unmount(where)


def test_a_compaction_on_a_full_disk_puts_the_files_back_and_loses_nothing(small_fs, caplog):
    core = __import__(CORES[0], fromlist=["x"])
    rnd = random.Random(22)
    for _ in range(6):
        write_worker(core, small_fs, rnd)
    for pid in THEIR_PIDS[:3]:
        write_theirs(small_fs, pid, rnd)
    (small_fs / "staging").rmdir()
    before = totals(theirs(small_fs))
    assert totals(ours(small_fs)) == before
    names = sorted(os.listdir(small_fs))
    filler = fill(small_fs)

    with pytest.raises(multiprocess.CompactionError) as failed:
        multiprocess.compact(str(small_fs))
    assert isinstance(failed.value.__cause__, OSError) and failed.value.__cause__.errno == errno.ENOSPC
    assert failed.value.left == []
    assert "back under its own name" in str(failed.value)
    assert set(os.listdir(small_fs)) == {*names, "filler", "django_prometheus.lock"}
    assert totals(theirs(small_fs)) == totals(ours(small_fs)) == before

    with caplog.at_level(logging.ERROR, logger="django_prometheus"):
        multiprocess.mark_process_dead(THEIR_PIDS[0], str(small_fs))
    (record,) = [r for r in caplog.records if "after process" in r.getMessage()]
    assert "No space left on device" in record.getMessage()
    assert "every file it had set aside and not folded is back under its own name" in record.getMessage()
    assert "stay as they were" not in record.getMessage()
    assert totals(theirs(small_fs)) == totals(ours(small_fs)) == before
    assert totals(ours(small_fs, compact_dead=True)) == before  # a scrape's compaction fails quietly

    filler.unlink()
    multiprocess.mark_process_dead(THEIR_PIDS[0], str(small_fs))
    multiprocess.compact(str(small_fs))
    assert not [n for n in os.listdir(small_fs) if n.endswith((".folding", ".tmp"))]
    assert not [n for n in os.listdir(small_fs) if "_django_" in n and "archive" not in n]
    assert totals(theirs(small_fs)) == totals(ours(small_fs)) == before


def test_a_file_whose_name_was_taken_stays_renamed_and_the_error_says_where(small_fs):
    # A crashed compaction left a dead worker's file renamed; a new process of that pid has
    # its own file under the name since: the failed fold cannot put it back, and says so.
    core = __import__(CORES[1], fromlist=["x"])
    rnd = random.Random(30)
    write_worker(core, small_fs, rnd)
    (small_fs / "staging").rmdir()
    (dead,) = [n for n in os.listdir(small_fs) if n.startswith("counter_django_")]
    os.rename(small_fs / dead, small_fs / f"{dead}.0123456789ab.folding")
    new = MmapedDict(str(small_fs / dead))
    new.write_value(mmap_key("django_c", "django_c_total", ["view", "method"], ["v0", "GET"], "c"), 1.0, 0.0)
    fcntl.flock(new._f.fileno(), fcntl.LOCK_SH)  # what a live writer of ours holds
    before = totals(ours(small_fs))
    fill(small_fs)
    try:
        with pytest.raises(multiprocess.CompactionError) as failed:
            multiprocess.compact(str(small_fs))
    finally:
        new.close()
    assert failed.value.left == [f"{dead}.0123456789ab.folding"]
    assert f"1 file(s) stay renamed in {small_fs} ({dead}.0123456789ab.folding)" in str(failed.value)
    assert "the next compaction folds them" in str(failed.value)
    assert totals(ours(small_fs)) == before
