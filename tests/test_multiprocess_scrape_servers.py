"""The scrape through real servers over loopback: recycling through many workers, forks, names, NUL/CR.

Scrapes go through the real ``/metrics`` view (``django_prometheus.urls``);
``/echo`` puts a client-chosen label value on
one of our metric classes; ``/spawn`` forks children that never count.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import urllib.parse

import pytest

from tests.mp_servers import HOST, free_port_range, request, start, stop
from tests.test_multiprocess_servers import PLAN_CYCLE, ROUTES, assert_exact, scrape_text, value

GUNICORN = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
UVICORN = shutil.which("uvicorn", path=os.path.dirname(sys.executable))
CONF = "tests/mp_project/gunicorn.conf.py"


def scrape(port: int, names: list[str] | None = None) -> tuple[bytes, dict]:
    query = "?" + urllib.parse.urlencode([("name[]", n) for n in names]) if names else ""
    status, body = request(port, "GET", "/metrics" + query)
    assert status == 200, body[:500]
    return body, scrape_text(body.decode("utf-8"))


def check_names_nul_cr(port: int) -> None:
    for v in ("a\x00b\rc", "plain"):
        assert request(port, "GET", "/echo?" + urllib.parse.urlencode({"v": v}))[0] == 200
    body, samples = scrape(port)
    assert b"\x00" not in body and b"\r" not in body
    assert value(samples, "mp_echo_total", v="a\ufffdb\ufffdc") == 1.0
    assert value(samples, "mp_echo_total", v="plain") == 1.0
    body, filtered = scrape(port, ["mp_echo_total", "django_http_requests_before_middlewares_total"])
    assert {name for name, _ in filtered} == {
        "mp_echo_total",
        "django_http_requests_before_middlewares_total",
    }
    assert {k: v for k, v in samples.items() if k[0] == "mp_echo_total"} == {
        k: v for k, v in filtered.items() if k[0] == "mp_echo_total"
    }


@pytest.mark.services
@pytest.mark.skipif(GUNICORN is None, reason="no gunicorn")
def test_gunicorn_multiprocess_forks_leave_no_file_names_filter_nul_cr_replaced(mp_server_project):
    env, mp_dir = mp_server_project
    (port,) = free_port_range(1)
    cmd = [sys.executable, "-m", "gunicorn", "tests.mp_project.wsgi:application", "-b", f"{HOST}:{port}",
           "-w", "2", "-c", CONF]  # fmt: skip
    proc = start(cmd, env, port, mp_dir.parent / "server.log")
    try:
        children = []
        for _ in range(4):
            status, body = request(port, "GET", "/spawn")
            assert status == 200, body
            children += body.split()
        check_names_nul_cr(port)
    finally:
        log = stop(proc)
    pids = {name[:-3].rsplit("_", 1)[1] for name in os.listdir(mp_dir) if name.endswith(".db")}
    assert children and not pids & {c.decode() for c in children}, (pids, children, log[-2000:])


@pytest.mark.services
@pytest.mark.skipif(UVICORN is None, reason="no uvicorn")
def test_uvicorn_single_process_names_filter_nul_cr_replaced(mp_server_project):
    env, _ = mp_server_project
    env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    (port,) = free_port_range(1)
    cmd = [sys.executable, "-m", "uvicorn", "tests.mp_project.asgi:application", "--host", HOST,
           "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = start(cmd, env, port, mp_server_project[1].parent / "server.log")
    try:
        check_names_nul_cr(port)
    finally:
        stop(proc)


SCRAPE_COUNTS = [
    ("django_http_requests_before_middlewares_total", {}),
    ("django_http_responses_before_middlewares_total", {}),
    ("django_http_requests_total_by_method_total", {"method": "GET"}),
    ("django_http_responses_total_by_status_total", {"status": "200"}),
]


@pytest.mark.services
@pytest.mark.skipif(GUNICORN is None, reason="no gunicorn")
def test_gunicorn_recycling_a_worker_per_request_scraped_while_recycling_counts_exact(mp_server_project):
    """Every request a new worker (--max-requests 1); mark_process_dead compacts as they go.

    150 requests by default (gunicorn respawns about one worker a second on a loaded
    2-core box); DP_RECYCLE_REQUESTS=3000 recycles through thousands on a quiet one.
    """
    env, mp_dir = mp_server_project
    (port,) = free_port_range(1)
    cmd = [sys.executable, "-m", "gunicorn", "tests.mp_project.wsgi:application", "-b", f"{HOST}:{port}",
           "-w", "8", "--max-requests", "1", "--preload", "-c", CONF]  # fmt: skip
    proc = start(cmd, env, port, mp_dir.parent / "server.log")
    plan = [PLAN_CYCLE[i % len(PLAN_CYCLE)] for i in range(int(os.environ.get("DP_RECYCLE_REQUESTS", "150")))]
    done, errors, checks = [0], [], []
    lock = threading.Lock()
    it = iter(plan)
    stop_scraping = threading.Event()
    scrapes = [0]

    def load() -> None:
        while not errors:
            with lock:
                item = next(it, None)
            if item is None:
                return
            try:
                status, _ = request(port, *item)
            except OSError as exc:  # a worker exiting mid-connection is a test failure: counts are exact
                errors.append(f"{item}: {exc!r}")
                return
            if status != ROUTES[item][1]:
                errors.append(f"{item}: {status}")
            with lock:
                done[0] += 1

    def scraper() -> None:
        while not stop_scraping.is_set():
            with lock:
                low = done[0] + scrapes[0]
            _, samples = scrape(port)
            with lock:
                scrapes[0] += 1
                high = len(plan) + scrapes[0]
            seen = value(samples, "django_http_requests_before_middlewares_total")
            checks.append(low <= seen <= high)
            time.sleep(0.2)

    threads = [threading.Thread(target=load) for _ in range(8)]
    watcher = threading.Thread(target=scraper)
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        watcher.start()
        for t in threads:
            t.join()
        stop_scraping.set()
        watcher.join()
        _, final = scrape(port)
    finally:
        stop_scraping.set()
        log = stop(proc)
    assert not errors, (errors[:5], log[-3000:])
    elapsed = time.monotonic() - started
    n_scrapes = scrapes[0]
    for (
        name,
        labels,
    ) in SCRAPE_COUNTS:  # the earlier scrapes are requests too; the last one counts as it renders
        key = (name, frozenset(labels.items()))
        final[key] = final.get(key, 0.0) - n_scrapes - (1 if "requests" in name else 0)
    assert_exact(final, plan)
    assert checks and all(checks), f"{checks.count(False)} of {len(checks)} scrapes outside what was sent"
    files = [n for n in os.listdir(mp_dir) if n.endswith(".db")]
    assert len(files) < 40, (len(files), sorted(files)[:20])  # compacted: not 2 per worker ever run
    print(f"{len(plan) + n_scrapes + 1} workers in {elapsed:.0f} s, {n_scrapes} scrapes while recycling")
