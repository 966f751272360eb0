"""The demo (examples/demo) as a new user meets it: the tour's pages, its forms, the N+1 page
and its select_related twin, /metrics protection, the traffic's queue-time header and traced
request, and optional backends that are refused at start with what to install or start.

The demo runs in a subprocess on a free loopback port and is stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

from tests.deploy_servers import get, stop, wait
from tests.servers import ROOT, free_port, parse_samples, sample_value

DEMO = ROOT / "examples" / "demo"


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DEMO_SQLITE_PATH=str(tmp_path / "demo.sqlite3"), PYTHONUNBUFFERED="1", **extra)
    return env


@contextmanager
def demo(tmp_path, *args: str, **extra: str):
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port), *args],
            cwd=DEMO, env=_env(tmp_path, **extra), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait("the demo", lambda: get(f"{base}/items/?format=json")[0] == 200, proc, log)
        yield base, log
    finally:
        stop(proc)


def _post(url: str, data: bytes) -> tuple[int, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=10) as resp:
            return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Location", "")


def test_the_tour_its_forms_and_the_n_plus_one_twins(tmp_path):
    with demo(tmp_path) as (base, _):
        status, home = get(f"{base}/")
        assert status == 200
        for link in (
            "/items/",
            "/orders/n-plus-one",
            "/orders/select-related",
            "/boom",
            "/db-error",
            "/metrics",
        ):
            assert f'href="{link}"'.encode() in home, link
        assert b"django_http_request_db_repeated_queries_total" in home
        # A form's write goes back to its page; a redirect elsewhere is not followed.
        assert _post(f"{base}/items/new", b"name=from-a-form&next=/items/") == (302, "/items/")
        assert _post(f"{base}/items/new", b"name=x&next=https://example.com/")[0] == 201
        status, items = get(f"{base}/items/")
        assert status == 200 and b"from-a-form" in items and b'action="/items/new"' in items
        for _ in range(2):
            assert get(f"{base}/orders/n-plus-one")[0] == 200
            assert get(f"{base}/orders/select-related")[0] == 200
        samples = parse_samples(get(f"{base}/metrics")[1].decode())
    repeated = "django_http_request_db_repeated_queries_total"
    assert sample_value(samples, repeated, route="orders/n-plus-one") == 2
    assert sample_value(samples, repeated, route="orders/select-related") == 0
    queries = "django_http_request_db_queries_sum"
    assert sample_value(samples, queries, route="orders/n-plus-one") == 2 * 17  # 16 orders + 1
    assert sample_value(samples, queries, route="orders/select-related") == 2 * 1
    assert sample_value(samples, "django_model_inserts_total", model="item") == 2


def test_the_traffic_sends_queue_time_and_a_traced_request(tmp_path):
    pytest.importorskip("opentelemetry.sdk")
    with demo(tmp_path, "--traffic", "--rounds", "2", "--pause", "0.05") as (base, log):
        wait("the traffic", lambda: b"demo traffic: done" in log.read_bytes())
        samples = parse_samples(get(f"{base}/metrics")[1].decode())
        req = urllib.request.Request(
            f"{base}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            openmetrics = resp.read().decode()
    assert sample_value(samples, "django_http_request_queue_seconds_count") > 10
    exemplars = [line for line in openmetrics.splitlines() if "trace_id=" in line]
    assert any(
        line.startswith("django_http_requests_latency_seconds_by_view_method_bucket") for line in exemplars
    )


def test_metrics_protection_with_a_token(tmp_path):
    with demo(tmp_path, DEMO_METRICS_TOKEN="s3cret") as (base, log):
        assert get(f"{base}/metrics")[0] == 401
        assert get(f"{base}/metrics", "s3cret")[0] == 200
        assert b"Protected" in get(f"{base}/")[1]
        assert "/metrics: protected" in log.read_text()


def _refusal(tmp_path, code: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=DEMO,
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


RUN_WITHOUT = (
    "import runpy, sys; sys.modules[{module!r}] = None; sys.argv = ['manage.py', 'demo', '--port', '1'];"
    " runpy.run_path('manage.py', run_name='__main__')"
)


@pytest.mark.parametrize(
    "setting, module, install",
    [("DEMO_CACHE=redis", "redis", "pip install 'redis>=4'"),
     ("DEMO_DB=postgresql", "psycopg", "pip install 'psycopg[binary]>=3.1'")],
)  # fmt: skip
def test_a_backend_without_its_driver_is_refused_with_the_install_line(tmp_path, setting, module, install):
    name, value = setting.split("=")
    res = _refusal(tmp_path, RUN_WITHOUT.format(module=module), **{name: value})
    assert res.returncode == 1, res.stdout + res.stderr
    assert install in res.stderr and f"{setting} make demo" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_backend_that_is_not_running_is_refused_with_what_to_start(tmp_path):
    port = free_port()  # nothing listens there
    res = _refusal(
        tmp_path,
        RUN_WITHOUT.format(module="no_such_module_anywhere"),
        DEMO_CACHE="redis",
        DEMO_REDIS_URL=f"redis://127.0.0.1:{port}",
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert (
        f"cannot reach Redis at redis://127.0.0.1:{port}" in res.stderr and "services.sh start" in res.stderr
    )
