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
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from django_prometheus import multiprocess
from tests.mp_servers import HOST, free_port_range, request, start, stop
from tests.servers import parse_samples
from tests.servers import sample_value as value
from tests.test_multiprocess_scrape import THEIR_PIDS, ours, theirs, totals, write_theirs, write_worker

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


@pytest.fixture
def core(twin):
    """The name of the core's cells module the writer subprocesses import."""
    return twin.module_name("cells")


def run_core(core: str, directory: Path, script: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import importlib
        from prometheus_client.mmap_dict import mmap_key
        core = importlib.import_module({core!r})
        store = core.MultiProcessStore({str(directory)!r})
    """) + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


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


def test_a_compaction_on_a_full_disk_puts_the_files_back_and_loses_nothing(small_fs, caplog, compiled_twin):
    core = compiled_twin.cells
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


def test_a_file_whose_name_was_taken_stays_renamed_and_the_error_says_where(small_fs, pure_twin):
    # A crashed compaction left a dead worker's file renamed; a new process of that pid has
    # its own file under the name since: the failed fold cannot put it back, and says so.
    core = pure_twin.cells
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


# --- gunicorn with traffic on a full multiprocess directory ----------------------------------

FAILED_PID = re.compile(r"cannot write this process' multiprocess metrics files .*?process (\d+) counts")


def get_pids(port: int, n: int, threads: int = 4) -> list[int]:
    """``n`` GET /pid requests; the pid that served each. Every one must be answered."""
    served: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    todo = iter(range(n))

    def worker() -> None:
        while True:
            with lock:
                if errors or next(todo, None) is None:  # the first failure ends the load
                    return
            try:
                status, body = request(port, "GET", "/pid")
            except Exception as exc:  # every request must get its answer
                errors.append(repr(exc))
                return
            with lock:
                if status == 200:
                    served.append(int(body))
                else:
                    errors.append(f"status {status}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors[:5]
    return served


def counted(samples) -> float:
    return value(samples, "django_http_requests_total_by_view_transport_method_total",
                 view="pid", transport="http", method="GET")  # fmt: skip


@pytest.mark.services
@pytest.mark.skipif(
    shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None, reason="no gunicorn"
)
def test_gunicorn_on_a_full_disk_answers_every_request_and_counts_exactly_after(mp_server_project):
    env, mp_dir = mp_server_project
    mount_tmpfs(mp_dir, "2m")
    try:
        (port,) = free_port_range(1)
        cmd = [sys.executable, "-m", "gunicorn", "tests.mp_project.wsgi:application", "-b", f"{HOST}:{port}",
               "-c", "tests/mp_project/gunicorn.conf.py",  # mark_process_dead: compacts when a worker exits
               "-w", "2", "--max-requests", "30", "--graceful-timeout", "5"]  # fmt: skip
        proc = start(cmd, env, port, mp_dir.parent / "server.log")
        try:
            served = get_pids(port, 10, threads=2)  # no recycling yet: at most 10 per worker
            filler = fill(mp_dir)
            served += get_pids(port, 150)  # workers recycled every 30 requests, born on a full disk
            status, body = request(port, "GET", "/metrics")
            assert status == 200
            full = parse_samples(body.decode())
            log = proc.log.read_text(errors="replace")  # type: ignore[attr-defined]
            failed = {int(p) for p in FAILED_PID.findall(log)}
            assert failed, "no worker was born on the full disk"
            assert counted(full) == sum(p not in failed for p in served)
            filler.unlink()  # space again: workers born from now on write their files
            served += get_pids(port, 100)
            status, body = request(port, "GET", "/metrics")
            assert status == 200
        finally:
            log = stop(proc)
        after = parse_samples(body.decode())
        logged = FAILED_PID.findall(log)
        assert len(logged) == len(set(logged)), logged  # once per process
        failed = {int(p) for p in logged}
        assert counted(after) == sum(p not in failed for p in served)  # no count lost or doubled
        assert len(set(served)) > 4, "workers were not recycled"
        # (SIGTERM: the shutdown at the end)
        assert not re.search(r"SIGBUS|was sent SIG(?!TERM)|exited with code", log), log[-3000:]
        assert log.count("Booting worker") <= 2 + len(served) // 30 + 4  # no death loop
        # The hook's compaction failed on the full disk, said so truly, and put the files back.
        assert "No space left on device" in log and "is back under its own name" in log
        assert "stay as they were" not in log
        assert not [n for n in os.listdir(mp_dir) if n.endswith((".folding", ".tmp"))]
    finally:
        unmount(mp_dir)
