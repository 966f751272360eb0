"""Live gauges (``live*`` multiprocess modes) leave with their process, with or without a server hook.

Our gauges live in lockable files (``gauge_<mode>_<pid>.db_django.db``): a
living writer holds a lock on its file, so a compaction (each scrape of the
view, or ``mark_process_dead``) drops the live-gauge files nobody holds,
whatever the pid, the way it folds dead counters. Proved with real uvicorn
``--workers`` killed with ``kill -9`` in the middle of requests, both cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import mmap_key

from django_prometheus import multiprocess
from tests.mp_servers import HOST, free_port_range, request, start, stop
from tests.servers import parse_samples
from tests.test_multiprocess_scrape import ours, totals

ROOT = Path(__file__).resolve().parent.parent
IN_FLIGHT = "django_http_requests_in_progress"


@pytest.fixture
def core(twin):
    return twin.cells


@pytest.fixture
def core_name(twin):
    return twin.module_name("cells")


def gauge_key(name: str, **labels: str) -> str:
    return mmap_key(name, name, list(labels), list(labels.values()), "help")


def writer(directory: Path, core: str, script: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import importlib, sys
        from prometheus_client.mmap_dict import mmap_key
        core = importlib.import_module({core!r})
        store = core.MultiProcessStore({str(directory)!r})
    """) + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_a_killed_writers_live_gauge_goes_and_a_live_ones_stays(tmp_path, core_name):
    script = """
        key = mmap_key("g", "g", ["m"], ["GET"], "h")
        store.gauge(key, "livesum").inc(int(sys.argv[1]))
        store.gauge(mmap_key("kept", "kept", [], [], "h"), "max").set(4)
        print("ready", flush=True)
        sys.stdin.readline()
    """
    live = writer(tmp_path, core_name, script.replace("sys.argv[1]", "2"))
    dead = writer(tmp_path, core_name, script.replace("sys.argv[1]", "3"))
    try:
        assert live.stdout.readline().strip() == dead.stdout.readline().strip() == "ready"
        assert totals(ours(tmp_path))[("g", (("m", "GET"),))] == 5.0
        os.kill(dead.pid, signal.SIGKILL)  # no hook, no clean exit
        dead.wait()
        assert totals(ours(tmp_path, compact_dead=True))[("g", (("m", "GET"),))] == 2.0
        names = os.listdir(tmp_path)
        assert f"gauge_livesum_{live.pid}.db_django.db" in names
        assert f"gauge_livesum_{dead.pid}.db_django.db" not in names
        assert f"gauge_max_{dead.pid}.db_django.db" in names  # not a live mode: stays, as prometheus_client
    finally:
        live.communicate("")
        dead.kill()
        dead.communicate()
    multiprocess.compact(str(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gauge_live")]
    assert ("g", (("m", "GET"),)) not in totals(ours(tmp_path))
    assert totals(ours(tmp_path))[("kept", ())] == 4.0


def test_a_recycled_pid_starts_its_live_gauges_from_zero(core, tmp_path):
    # A dead process of our pid left its live gauge behind, and no scrape removed it yet.
    first = core.MultiProcessStore(str(tmp_path))
    first.gauge(gauge_key("g"), "livesum").inc(3)
    first.gauge(gauge_key("s"), "sum").inc(3)
    first.close()
    second = core.MultiProcessStore(str(tmp_path))
    try:
        g, s = second.gauge(gauge_key("g"), "livesum"), second.gauge(gauge_key("s"), "sum")
        assert (g.get(), s.get()) == (0.0, 3.0)  # a live value is the process', a sum goes on
        g.inc()
        assert totals(ours(tmp_path))[("g", ())] == 1.0
        # Two stores of one live process share the file: neither drops the other's.
        third = core.MultiProcessStore(str(tmp_path))
        assert third.gauge(gauge_key("g"), "livesum").get() == 1.0
        third.close()
    finally:
        second.close()


def test_gauge_cells_follow_prometheus_client(core, tmp_path):
    store = core.MultiProcessStore(str(tmp_path))
    try:
        with pytest.raises(ValueError, match="Invalid multiprocess mode"):
            store.gauge(gauge_key("x"), "average")
        recent = store.gauge(gauge_key("r"), "mostrecent")
        with pytest.raises(RuntimeError, match="inc must not be used with the mostrecent mode"):
            recent.inc()
        with pytest.raises(RuntimeError, match="dec must not be used with the mostrecent mode"):
            recent.dec()
        before = time.time()
        recent.set(7)
        g = store.gauge(gauge_key("g", k="v"), "all")
        g.set(2)
        g.inc(0.5)
        g.dec(1)
        with g.track_inprogress():
            assert g.get() == 2.5
        assert g.get() == 1.5
        (name,) = [n for n in os.listdir(tmp_path) if n.startswith("gauge_mostrecent_")]
        from prometheus_client.mmap_dict import MmapedDict

        (entry,) = MmapedDict.read_all_values_from_file(str(tmp_path / name))
        assert entry[1] == 7.0 and entry[2] >= before  # the time of the set, for "mostrecent"
        assert totals(ours(tmp_path))[("g", (("k", "v"), ("pid", str(os.getpid()))))] == 1.5
    finally:
        store.close()


# --- uvicorn --workers, kill -9 with requests in flight ---------------------------------------


def worker_pids(master: int) -> set[int]:
    """uvicorn's worker processes (multiprocessing spawn children of the master)."""
    out = set()
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            out.add(int(child))
    return out


def scrape(port: int) -> dict:
    status, body = request(port, "GET", "/metrics")
    assert status == 200
    return parse_samples(body.decode())


def in_flight(samples: dict) -> float | None:
    return samples.get((IN_FLIGHT, frozenset({("method", "GET")})))


def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.services
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree in /proc")
@pytest.mark.skipif(not shutil.which("uvicorn", path=os.path.dirname(sys.executable)), reason="no uvicorn")
def test_uvicorn_workers_killed_mid_request_leave_no_in_flight_count_and_no_files(mp_server_project):
    env, mp_dir = mp_server_project
    env["MP_INFLIGHT"] = "1"
    (port,) = free_port_range(1)
    cmd = [sys.executable, "-m", "uvicorn", "tests.mp_project.asgi:application", "--host", HOST,
           "--port", str(port), "--workers", "2", "--no-access-log"]  # fmt: skip
    proc = start(cmd, env, port, mp_dir.parent / "server.log")
    slow_requests: list[threading.Thread] = []
    try:
        killed = wait_for(lambda: len(worker_pids(proc.pid)) == 2 and worker_pids(proc.pid), "2 workers")
        for _ in range(6):  # in flight until their worker dies
            t = threading.Thread(target=lambda: _ignore_errors(request, port, "GET", "/slow?s=90"))
            t.start()
            slow_requests.append(t)
        wait_for(lambda: in_flight(scrape(port)) == 6.0, "6 requests in flight")
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(proc.pid) - killed) == 2, "2 new workers")
        for t in slow_requests:
            t.join(30)
        for _ in range(20):  # the new workers serve (and have their own in-flight series, at 0)
            assert request(port, "GET", "/pid")[0] == 200
        samples = scrape(port)
        names = os.listdir(mp_dir)
    finally:
        log = stop(proc)
    assert in_flight(samples) == 0.0, (in_flight(samples), log[-3000:])  # a series at 0, not missing
    assert not [n for n in names for pid in killed if f"_{pid}." in n], names  # every file of theirs
    assert samples[
        ("django_http_requests_total_by_view_transport_method_total",
         frozenset({("view", "pid"), ("transport", "http"), ("method", "GET")}))
    ] == 20.0  # fmt: skip


def _ignore_errors(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:  # the worker serving it was killed: the connection drops
        pass
