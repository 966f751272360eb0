"""Running the multiprocess test project (tests/mp_project) under real servers: shared helpers.

Used by every test module that starts gunicorn, uvicorn or uWSGI in multiprocess mode;
the project's environment comes from the ``mp_server_project`` fixture (conftest).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port_range(n: int) -> list[int]:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((HOST, 0))
            base = s.getsockname()[1]
        ports = list(range(base, base + n))
        try:
            for p in ports:
                with socket.socket() as s:
                    s.bind((HOST, p))
        except OSError:
            continue
        return ports
    raise RuntimeError("no free ports")  # pragma: no cover


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port}")


def request(port: int, method: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request(method, path, body=b"x" * 10 if method in ("POST", "PUT", "PATCH") else None)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def project_env(tmp_path: Path) -> tuple[dict, Path]:
    """The environment that runs tests/mp_project in multiprocess mode, its schema migrated."""
    mp_dir = tmp_path / "multiproc"
    mp_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="tests.mp_project.settings",
        MP_DB=str(tmp_path / "db.sqlite3"),
        MP_CACHE_PREFIX=f"mp{os.getpid()}-{tmp_path.name}",
    )
    # The schema, made outside multiprocess mode so its queries stay out of the files.
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], env=env, cwd=ROOT, check=True, timeout=120
    )
    env["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    return env, mp_dir


def start(cmd: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    # The server's output goes to a file: an unread pipe fills up and blocks the workers.
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    proc.log = log  # type: ignore[attr-defined]
    try:
        wait_listening(port, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.log.read_text(errors="replace")  # type: ignore[attr-defined]
