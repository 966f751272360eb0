"""Server-Timing behind real servers: gunicorn (WSGI) and uvicorn (ASGI), and in headless Chromium.

Each test starts one server on 127.0.0.1 serving tests/timing_project (Server-Timing,
per-request DB and cache operation accounting on; a fresh SQLite file), then reads
the header over loopback, or has Chromium load a page and reads the entries back
through the Navigation Timing API (``performance.getEntriesByType("navigation")``),
driven by the Chrome DevTools protocol. Everything is bounded in time.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port, serve

SETTINGS = "tests.timing_project.settings"
ENTRY = re.compile(r'^(?P<name>[a-z]+);dur=(?P<dur>[0-9]+\.[0-9]{3})(?:;desc="(?P<desc>[^"]*)")?$')
BROWSER_SECONDS = 60
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _entries(header: str) -> dict[str, dict[str, str | None]]:
    found = {}
    for part in header.split(", "):
        matched = ENTRY.match(part)
        assert matched, f"not an entry: {part!r} in {header!r}"
        found[matched["name"]] = matched.groupdict()
    return found


def _gunicorn(port: int) -> list[str]:
    return ["gunicorn", "tests.timing_project.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1",
            "--worker-class", "gthread", "--threads", "4"]  # fmt: skip


def _uvicorn(port: int) -> list[str]:
    return ["uvicorn", "tests.timing_project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--lifespan", "off", "--no-access-log"]  # fmt: skip


def _check_over_http(base: str, page: str, server_trusts_forwarded: bool) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(3):
            response = client.get(page)
            assert response.status_code == 200
            found = _entries(response.headers["server-timing"])
            assert list(found) == ["app", "db", "cache"]
            assert found["db"]["desc"] == "3 queries"
            assert found["cache"]["desc"] == "2 ops"
            assert float(found["app"]["dur"]) >= float(found["db"]["dur"]) > 0.0
        plain = _entries(client.get("/plain").headers["server-timing"])
        assert plain["db"]["desc"] == "0 queries" and plain["cache"]["desc"] == "0 ops"
        own = client.get("/own").headers.get_list("server-timing")
        assert len(own) == 1 and own[0].startswith('view;dur=1.5;desc="own", app;dur=')
        assert "server-timing" not in client.get("/stream").headers
        # PROMETHEUS_METRICS_TRUSTED_PROXIES is unset: X-Forwarded-For cannot choose the address,
        # REMOTE_ADDR decides. gunicorn passes the peer (loopback, allowed by default); uvicorn
        # trusts a loopback peer's X-Forwarded-For itself (--proxy-headers, its default) and puts
        # 203.0.113.9 in REMOTE_ADDR: not allowed.
        forwarded = client.get("/plain", headers={"X-Forwarded-For": "203.0.113.9"})
        assert ("server-timing" in forwarded.headers) is not server_trusts_forwarded


SERVERS = {"gunicorn": (_gunicorn, "/page", False), "uvicorn": (_uvicorn, "/apage", True)}


@pytest.mark.parametrize("core", ["compiled", "pure"])
@pytest.mark.parametrize("server", list(SERVERS))
def test_real_servers(tmp_path: Path, server: str, core: str):
    make, page, trusts_forwarded = SERVERS[server]
    port = free_port()
    env = {
        "DJANGO_PROMETHEUS_NO_EXTENSIONS": "1" if core == "pure" else "",
        "DP_DB_FILE": str(tmp_path / "db"),
    }
    with serve(make(port), port, tmp_path / f"{server}.log", SETTINGS, **env) as base:
        _check_over_http(base, page, trusts_forwarded)


@pytest.mark.parametrize("core", ["compiled", "pure"])
@pytest.mark.parametrize("server", list(SERVERS))
def test_real_servers_app_entry_alone(tmp_path: Path, server: str, core: str):
    make, page, _ = SERVERS[server]
    port = free_port()
    env = {
        "DJANGO_PROMETHEUS_NO_EXTENSIONS": "1" if core == "pure" else "",
        "DP_DB_FILE": str(tmp_path / "db"),
        "DP_TIMING_APP_ONLY": "1",
    }
    with serve(make(port), port, tmp_path / f"{server}.log", SETTINGS, **env) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            for path in (page, "/plain"):
                (app,) = _entries(client.get(path).headers["server-timing"]).values()
                assert app["name"] == "app" and float(app["dur"]) > 0.0
            own = client.get("/own").headers.get_list("server-timing")
            assert len(own) == 1 and own[0].startswith('view;dur=1.5;desc="own", app;dur=')
            assert "server-timing" not in client.get("/stream").headers


def test_real_servers_not_allowed(tmp_path: Path):
    port = free_port()
    env = {"DP_DB_FILE": str(tmp_path / "db"), "DP_TIMING_ALLOWED": "192.0.2.0/24"}
    with serve(_gunicorn(port), port, tmp_path / "gunicorn.log", SETTINGS, **env) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            response = client.get("/page")
            assert response.status_code == 200
            assert "server-timing" not in response.headers


# -- Chromium --------------------------------------------------------------------------------------


class DevTools:
    """A minimal Chrome DevTools protocol client over one page target's WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, deadline: float, **params: object) -> dict:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"Chromium did not answer {method} in time"
            message = json.loads(self.ws.recv(timeout=remaining))
            if message.get("id") == call_id:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str, deadline: float) -> object:
        result = self.call("Runtime.evaluate", deadline, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: `scripts/services.sh install` installs it (make test does)")
    return found


def _open_browser(profile: Path, log: Path, deadline: float) -> tuple[subprocess.Popen, str]:
    args = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1", "about:blank"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    port_file = profile / "DevToolsActivePort"
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Chromium did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    while True:
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return proc, pages[0]["webSocketDebuggerUrl"]
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("Chromium exposed no page target")
        time.sleep(0.1)


READ_ENTRIES = """JSON.stringify(performance.getEntriesByType("navigation").map(n => n.serverTiming.map(
    e => ({name: e.name, duration: e.duration, description: e.description}))))"""


@pytest.mark.parametrize("core", ["compiled", "pure"])
def test_chromium_reads_the_entries_through_navigation_timing(tmp_path: Path, core: str):
    from websockets.sync.client import connect

    port = free_port()
    env = {
        "DJANGO_PROMETHEUS_NO_EXTENSIONS": "1" if core == "pure" else "",
        "DP_DB_FILE": str(tmp_path / "db"),
    }
    with serve(_gunicorn(port), port, tmp_path / "gunicorn.log", SETTINGS, **env) as base:
        deadline = time.monotonic() + BROWSER_SECONDS
        proc, ws_url = _open_browser(tmp_path / "profile", tmp_path / "chromium.log", deadline)
        try:
            with connect(ws_url, open_timeout=10, close_timeout=5, max_size=None) as ws:
                tools = DevTools(ws)
                tools.call("Page.navigate", deadline, url=f"{base}/page")
                while tools.evaluate("location.href + ' ' + document.readyState", deadline) != (
                    f"{base}/page complete"
                ):
                    assert time.monotonic() < deadline, "the page did not load in time"
                    time.sleep(0.05)
                (entries,) = json.loads(tools.evaluate(READ_ENTRIES, deadline))
                assert tools.evaluate("document.body.textContent", deadline) == "timed"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert [e["name"] for e in entries] == ["app", "db", "cache"]
    by_name = {e["name"]: e for e in entries}
    assert by_name["db"]["description"] == "3 queries"
    assert by_name["cache"]["description"] == "2 ops"
    assert by_name["app"]["description"] == ""
    assert by_name["app"]["duration"] >= by_name["db"]["duration"] > 0
