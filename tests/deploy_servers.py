"""The deployment examples (examples/deploy) run for real: a server per config, on a free loopback port.

Shared by tests/test_deploy_servers.py (one server per config) and tests/test_deploy_prometheus.py
(three instances, two Prometheus servers). Every process started here runs in a session of its
own and that session is stopped when the block ends, even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port

DEPLOY = ROOT / "examples" / "deploy"
STARTUP_SECONDS = 60
TIMEOUT = 60.0  # upper bound for each wait; a healthy run converges in a few seconds

#: How each example config is started; "{bin}" is the interpreter's scripts directory.
COMMANDS = {
    "gunicorn-sync": ["{python}", "-m", "gunicorn", "-c", "gunicorn_sync.conf.py", "mysite.wsgi"],
    "gunicorn-gthread": ["{python}", "-m", "gunicorn", "-c", "gunicorn_gthread.conf.py", "mysite.wsgi"],
    "gunicorn-uvicorn": [
        "{python}",
        "-m",
        "gunicorn",
        "-c",
        "gunicorn_uvicorn.conf.py",
        "mysite.asgi:application",
    ],  # fmt: skip
    "uvicorn": ["{python}", "uvicorn_run.py"],
    "uwsgi": ["{bin}/uwsgi", "--ini", "uwsgi.ini"],
}


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def send(base: str, traffic: dict[str, int]) -> None:
    """``traffic[path]`` GETs of each path, four at a time (so several workers serve them)."""
    urls = [f"{base}/{path}" for path, n in traffic.items() for _ in range(n)]
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda u: get(u)[0], urls))
    assert all(s in (200, 404) for s in statuses), statuses


@contextmanager
def run_example(name: str, tmp: Path, **env: str) -> Iterator[str]:
    """The example ``name`` with its own empty multiprocess directory; yields its base URL."""
    if name == "uwsgi" and not (Path(sys.executable).parent / "uwsgi").exists():
        pytest.fail("uwsgi is not installed in this environment: `pip install uwsgi` (the test extra has it)")
    port = free_port()
    mpdir = tmp / f"metrics-{name}-{port}"
    shutil.rmtree(mpdir, ignore_errors=True)
    mpdir.mkdir(parents=True)
    environ = dict(os.environ)
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    environ.pop("prometheus_multiproc_dir", None)
    environ.update(
        PROMETHEUS_MULTIPROC_DIR=str(mpdir),
        BIND=f"127.0.0.1:{port}",
        PYTHONPATH=str(DEPLOY),
        DJANGO_SETTINGS_MODULE="mysite.settings",
        WEB_CONCURRENCY="2",
        **env,
    )
    cmd = [a.format(python=sys.executable, bin=Path(sys.executable).parent) for a in COMMANDS[name]]
    log = tmp / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=DEPLOY, env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not listen within {STARTUP_SECONDS}s:\n{log.read_text()}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's session (master and workers), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # any worker left behind by its master
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("`prometheus` is not installed: `scripts/services.sh install` installs Debian's")
    return path


@contextmanager
def prometheus(tmp: Path, name: str, config: dict | None, *extra: str) -> Iterator[str]:
    """A Prometheus on a free loopback port with ``config`` (written as JSON, which is YAML)."""
    port = free_port()
    conf = tmp / f"{name}.yml"
    conf.write_text(json.dumps(config or {"global": {"scrape_interval": "1s"}}))
    log = tmp / f"{name}.log"
    args = [
        _prometheus_binary(),
        f"--config.file={conf}",
        f"--storage.tsdb.path={tmp / (name + '-data')}",
        f"--web.listen-address=127.0.0.1:{port}",
        *extra,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait(f"prometheus {name} ready", lambda: get(f"{base}/-/ready")[0] == 200, proc, log)
        yield base
    finally:
        stop(proc)


def wait(what, check, proc=None, log=None):
    deadline = time.monotonic() + TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            result = check()
        except OSError as exc:
            result, last = None, repr(exc)
        if result:
            return result
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out waiting for {what} (last: {last})\n{tail}")


def query(base: str, expr: str) -> list[dict]:
    status, body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    data = json.loads(body)
    assert status == 200 and data["status"] == "success", (expr, data)
    return data["data"]["result"]


def by(result: list[dict], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1]) for r in result}
