"""End to end: Debian's real `prometheus` scrapes the demo site over loopback.

The demo (examples/demo) runs in a subprocess on 127.0.0.1 and drives a bounded
amount of traffic against itself (DEMO_TRAFFIC); a Prometheus server on another
loopback port scrapes it every second. Assertions go through Prometheus' HTTP API:
what arrived there is what a user's dashboards and alerts will see. Everything
started here is stopped here. Also: `promtool` on our exposition, on the example
rules (check + unit tests), and every metric name in the rules and the Grafana
dashboard exists in the real scrape.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"
RULES = ROOT / "examples" / "prometheus" / "django.rules.yml"
RULE_TESTS = ROOT / "examples" / "prometheus" / "tests" / "django.rules.test.yml"
DASHBOARD = ROOT / "examples" / "grafana" / "django.json"
ROUNDS = 5  # demo traffic rounds: one insert each, and every failure kind once (see shop/traffic.py)
TIMEOUT = 60.0  # upper bound for any wait below; a healthy run needs a few seconds

# Upstream's migration gauges are named *_total; the names are the contract (dashboards and
# alerts use them), so promtool's naming lint on these two, and only these, is expected.
EXPECTED_LINT = {
    'django_migrations_applied_total non-counter metrics should not have "_total" suffix',
    'django_migrations_unapplied_total non-counter metrics should not have "_total" suffix',
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: `scripts/services.sh install` installs Debian's prometheus")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


def _wait(what: str, check, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `check()` until it returns something truthy; fail after TIMEOUT with the log's tail."""
    deadline = time.monotonic() + TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            result = check()
        except OSError as exc:  # not listening yet, or not ready (an HTTPError: 503)
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # it holds the response's socket: unclosed, it warns later, in another test
            result, last = None, repr(exc)
        if result:
            return result
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out waiting for {what} (last error: {last})\n{tail}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _sample(body: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            got = ",".join(sorted(re.findall(r'\w+="[^"]*"', series)))
            if got == want:
                return float(value)
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo site on 127.0.0.1, its traffic run to completion; yields (base_url, exposition)."""
    tmp = tmp_path_factory.mktemp("demo")
    port = _free_port()
    log = tmp / "demo.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DEMO_SQLITE_PATH": str(tmp / "demo.sqlite3"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DEMO_DB", None)
    env.pop("DEMO_CACHE", None)
    cmd = [sys.executable, "manage.py", "demo", "--port", str(port), "--traffic", "--rounds", str(ROUNDS)]
    cmd += ["--pause", "0.05"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=DEMO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        # The traffic thread prints when its bounded loop is over.
        _wait("the demo's traffic", lambda: b"demo traffic: done" in log.read_bytes(), proc, log)
        banner = log.read_text(errors="replace")
        assert f"{base}/metrics" in banner, banner  # it says where to look
        body = _get(f"{base}/metrics").decode()
        yield base, body, proc, log
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def prometheus(demo, tmp_path_factory):
    """A real Prometheus on loopback scraping the demo every second, with the example rules loaded."""
    base, _, demo_proc, demo_log = demo
    binary = _tool("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    port = _free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: [{json.dumps(str(RULES))}]\n"
        "scrape_configs:\n  - job_name: django\n"
        f"    static_configs: [{{targets: ['{base.removeprefix('http://')}']}}]\n"
    )
    log = tmp / "prometheus.log"
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        _wait("Prometheus to answer", lambda: _get(f"http://127.0.0.1:{port}/-/ready"), proc, log)

        def scraped():
            targets = json.loads(_get(f"{api}/targets"))["data"]["activeTargets"]
            return targets and targets[0]["health"] == "up" and targets[0]

        target = _wait("a successful scrape of the demo", scraped, proc, log)
        assert target["labels"]["job"] == "django"
        yield api, proc, log
    finally:
        _stop(proc)


def _query(api: str, promql: str) -> list[dict]:
    data = json.loads(_get(f"{api}/query?" + urllib.parse.urlencode({"query": promql})))
    assert data["status"] == "success", data
    return data["data"]["result"]


def _arrived(api: str, promql: str, expected: float, proc, log) -> dict:
    """Wait until Prometheus holds `expected` for the query (one series), return that series' labels."""

    def check():
        result = _query(api, promql)
        if len(result) == 1 and float(result[0]["value"][1]) == expected:
            return result[0]["metric"]
        return None

    return _wait(f"{promql} == {expected} in Prometheus", check, proc, log)


# (exposed sample name, exact labels) -> the value the demo's exposition has must arrive.
SERIES = [
    ("django_http_requests_total_by_method_total", {"method": "POST"}),
    (
        "django_http_responses_total_by_status_view_method_total",
        {"status": "201", "view": "item-create", "method": "POST"},
    ),
    (
        "django_http_responses_total_by_status_view_method_total",
        {"status": "500", "view": "boom", "method": "GET"},
    ),
    (
        "django_http_responses_total_by_status_view_method_total",
        {"status": "404", "view": "<unnamed view>", "method": "GET"},
    ),
    ("django_http_requests_latency_seconds_by_view_method_count", {"view": "item-list", "method": "GET"}),
    ("django_http_exceptions_total_by_view_total", {"view": "boom"}),
    # the opt-in HTTP families the demo turns on
    ("django_http_route_requests_total", {"route": "items/new", "method": "POST", "status": "201"}),
    ("django_http_route_requests_total", {"route": "<unmatched>", "method": "GET", "status": "404"}),
    ("django_http_route_request_duration_seconds_count", {"route": "items/<int:pk>/touch", "method": "POST"}),
    ("django_http_requests_in_progress", {"method": "GET"}),
    ("django_http_exceptions_total_by_type_total", {"type": "RuntimeError"}),
    ("django_http_responses_total_by_templatename_total", {"templatename": "shop/home.html"}),
    ("django_cache_get_total", {"backend": "locmem"}),
    ("django_cache_get_hits_total", {"backend": "locmem"}),
    ("django_cache_get_misses_total", {"backend": "locmem"}),
    ("django_db_execute_total", {"alias": "default", "vendor": "sqlite"}),
    ("django_db_errors_total", {"alias": "default", "vendor": "sqlite", "type": "OperationalError"}),
    ("django_db_query_duration_seconds_count", {"alias": "default", "vendor": "sqlite"}),
    ("django_model_inserts_total", {"model": "item"}),
    ("django_model_updates_total", {"model": "item"}),
    ("django_model_deletes_total", {"model": "item"}),
    ("django_migrations_applied_total", {"connection": "default"}),
    ("django_migrations_unapplied_total", {"connection": "default"}),
]


def test_demo_counts_what_its_traffic_did(demo):
    _, body, _, _ = demo
    assert _sample(body, "django_model_inserts_total", model="item") == ROUNDS
    assert _sample(body, "django_http_responses_total_by_status_view_method_total",
                   status="201", view="item-create", method="POST") == ROUNDS  # fmt: skip
    assert _sample(body, "django_http_exceptions_total_by_view_total", view="boom") == 1
    route = {"route": "items/new", "method": "POST", "status": "201"}
    assert _sample(body, "django_http_route_requests_total", **route) == ROUNDS
    assert _sample(body, "django_http_requests_in_progress", method="GET") == 0  # the scrape is excluded
    # PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$"]: the polling of /metrics is in no family
    vtm = "django_http_requests_total_by_view_transport_method_total"
    assert _sample(body, vtm, view="prometheus-django-metrics", transport="http", method="GET") is None
    assert (
        _sample(body, "django_db_errors_total", alias="default", vendor="sqlite", type="OperationalError")
        == 1
    )
    assert _sample(body, "django_migrations_unapplied_total", connection="default") == 0
    assert _sample(body, "django_migrations_applied_total", connection="default") >= 1
    hits = _sample(body, "django_cache_get_hits_total", backend="locmem")
    misses = _sample(body, "django_cache_get_misses_total", backend="locmem")
    assert hits > 0 and misses > 0
    assert _sample(body, "django_cache_get_total", backend="locmem") == hits + misses


@pytest.mark.parametrize(("name", "labels"), SERIES, ids=[f"{n}{sorted(lab.values())}" for n, lab in SERIES])
def test_series_arrives_in_prometheus_with_its_labels(demo, prometheus, name, labels):
    _, body, _, _ = demo
    api, proc, log = prometheus
    expected = _sample(body, name, **labels)
    assert expected is not None, f"{name}{labels} is not in the demo's exposition"
    # Only the series the demo's own traffic made; /metrics polling does not touch these.
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    got = _arrived(api, f'{name}{{job="django",{selector}}}', expected, proc, log)
    assert got == {"__name__": name, "job": "django", "instance": got["instance"], **labels}


def test_promtool_check_metrics_finds_only_upstreams_gauge_names(demo):
    _, body, _, _ = demo
    res = subprocess.run(
        [_tool("promtool"), "check", "metrics"], input=body.encode(), capture_output=True, timeout=60
    )
    findings = {line.strip() for line in (res.stdout + res.stderr).decode().splitlines() if line.strip()}
    assert findings == EXPECTED_LINT, findings


def test_promtool_check_metrics_is_clean_without_the_migration_gauges(demo):
    _, body, _, _ = demo
    # Everything but upstream's two gauge families: not a single finding.
    kept = "\n".join(line for line in body.splitlines() if "django_migrations_" not in line) + "\n"
    res = subprocess.run(
        [_tool("promtool"), "check", "metrics"], input=kept.encode(), capture_output=True, timeout=60
    )
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res


def test_example_rules_pass_promtool_check_and_unit_tests():
    promtool = _tool("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS.parent,
    )
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


_NAME = re.compile(r"(?<![\w:])(django_[a-z0-9_]+)(?![\w:])")

# Families the SQLite demo cannot have: pools exist only for Django 5.1+ PostgreSQL pools
# (tests/test_db_pool.py scrapes them from a real pool). Each stays in the dashboard and
# rules, and must be absent here, so that this list never hides a family gone missing.
NOT_IN_A_SQLITE_DEMO = {"django_db_pool_connections", "django_db_pool_size"}


def _per_request_db_families() -> set[str]:
    """The per-request DB families, until ``django_prometheus.db.per_request`` is in this build."""
    try:
        import django_prometheus.db.per_request  # noqa: F401
    except ImportError:
        return {
            "django_http_request_db_queries_sum",
            "django_http_request_db_queries_count",
            "django_http_request_db_repeated_queries_total",
        }
    return set()


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        if isinstance(var.get("query"), dict):
            exprs.append(var["query"]["query"])
    return exprs


def test_every_metric_in_the_rules_and_dashboard_exists_in_a_real_scrape(prometheus):
    api, proc, log = prometheus
    exprs = _dashboard_exprs()
    assert len(exprs) > 20
    used = {n for e in exprs for n in _NAME.findall(e)} | set(_NAME.findall(RULES.read_text()))
    assert len(used) > 15
    assert NOT_IN_A_SQLITE_DEMO <= used
    unavailable = NOT_IN_A_SQLITE_DEMO | _per_request_db_families()
    used -= unavailable

    def scraped_names():
        # The names Prometheus stored from the demo's scrapes (job="django"), not a list of ours.
        data = json.loads(
            _get(f"{api}/label/__name__/values?" + urllib.parse.urlencode({"match[]": '{job="django"}'}))
        )
        names = set(data["data"])
        return names if used <= names else None

    def missing():
        data = json.loads(_get(f"{api}/label/__name__/values"))
        return sorted(used - set(data["data"]))

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and not scraped_names():
        time.sleep(0.5)
    assert not missing(), f"used in rules/dashboard but never scraped: {missing()}"
    everything = set(json.loads(_get(f"{api}/label/__name__/values"))["data"])
    assert not (NOT_IN_A_SQLITE_DEMO & everything), "the demo has pools now: drop them from the list"


def test_recording_rules_evaluate_on_the_scraped_data(prometheus):
    api, proc, log = prometheus
    # Every rule loaded from the example file, none failing to evaluate.
    groups = json.loads(_get(f"{api}/rules"))["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 31
    assert not [r for r in rules if r.get("health") == "err"], [r.get("lastError") for r in rules]
