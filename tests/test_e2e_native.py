"""Native histograms end to end: gunicorn serves the demo with PROMETHEUS_NATIVE_HISTOGRAMS on,
and two real Prometheus 2.42 servers (Debian 12's) scrape it.

One runs with ``--enable-feature=native-histograms``: it asks for protobuf and stores our
histograms as native series only (2.42 has no ``scrape_classic_histograms``). The other runs
without it: text, classic ``_bucket``/``_count``/``_sum`` series. After a bounded amount of
traffic both must agree with each other and with the requests sent: ``histogram_count()`` and
``histogram_sum()`` of the native series equal the classic ``_count`` and ``_sum``, and the
native median lies inside the classic bucket that holds the classic median.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.test_e2e_prometheus import DEMO, ROOT, _free_port, _get, _query, _stop, _tool, _wait

NATIVE_RULES = ROOT / "examples" / "prometheus" / "django.native.rules.yml"
NATIVE_DASHBOARD = ROOT / "examples" / "grafana" / "django-native.json"
REQUESTS = 30  # GET /items/: the series the assertions read
LATENCY = "django_http_requests_latency_seconds_by_view_method"
SELECTOR = '{job="django",view="item-list",method="GET"}'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The demo under gunicorn (one worker: one process' cells), migrated, with traffic sent."""
    tmp = tmp_path_factory.mktemp("native_demo")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.native_demo_settings",
        "DEMO_SQLITE_PATH": str(tmp / "demo.sqlite3"),
        "PYTHONPATH": os.pathsep.join([str(DEMO), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DEMO_DB", None)
    env.pop("DEMO_CACHE", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=DEMO, env=env, check=True
    )
    port = _free_port()
    log = tmp / "gunicorn.log"
    cmd = [sys.executable, "-m", "gunicorn", "demo.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=DEMO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("gunicorn", lambda: _get(f"{base}/metrics"), proc, log)
        for _ in range(REQUESTS):
            _get(f"{base}/items/")
        yield base, proc, log
    finally:
        _stop(proc)


def _prometheus(site, tmp_path_factory, native: bool):
    base, site_proc, _ = site
    tmp = tmp_path_factory.mktemp("prometheus_native" if native else "prometheus_classic")
    port = _free_port()
    config = tmp / "prometheus.yml"
    rules = f"rule_files: [{json.dumps(str(NATIVE_RULES))}]\n" if native else ""
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + rules
        + "scrape_configs:\n  - job_name: django\n"
        f"    static_configs: [{{targets: ['{base.removeprefix('http://')}']}}]\n"
    )
    log = tmp / "prometheus.log"
    cmd = [
        _tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    if native:
        cmd.append("--enable-feature=native-histograms")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1"
    _wait("Prometheus to answer", lambda: _get(f"http://127.0.0.1:{port}/-/ready"), proc, log)
    return api, proc, log


@pytest.fixture(scope="module")
def both(site, tmp_path_factory):
    native = _prometheus(site, tmp_path_factory, native=True)
    try:
        classic = _prometheus(site, tmp_path_factory, native=False)
        try:
            yield native, classic
        finally:
            _stop(classic[1])
    finally:
        _stop(native[1])


def _value(api, proc, log, promql: str, expected: float | None = None) -> float:
    """The single value of ``promql`` once it exists (and equals ``expected`` when given)."""

    def check():
        result = _query(api, promql)
        if len(result) == 1:
            v = float(result[0]["value"][1])
            if expected is None or v == expected:
                return (v,)
        return None

    return _wait(f"{promql} in Prometheus", check, proc, log)[0]


def test_the_site_answers_prometheus_2_42_with_protobuf(site):
    base, _, _ = site
    accept = (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
        "application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    request = urllib.request.Request(f"{base}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/vnd.google.protobuf;")
        assert LATENCY.encode() in r.read()


def test_native_and_classic_series_agree_with_each_other_and_the_traffic(both):
    (n_api, n_proc, n_log), (c_api, c_proc, c_log) = both
    count = _value(n_api, n_proc, n_log, f"histogram_count({LATENCY}{SELECTOR})", REQUESTS)
    assert count == _value(c_api, c_proc, c_log, f"{LATENCY}_count{SELECTOR}", REQUESTS)
    n_sum = _value(n_api, n_proc, n_log, f"histogram_sum({LATENCY}{SELECTOR})")
    c_sum = _value(c_api, c_proc, c_log, f"{LATENCY}_sum{SELECTOR}")
    assert n_sum == pytest.approx(c_sum, rel=1e-12) and n_sum > 0
    # Stored as native only: no classic bucket series on the native server, for any family of ours.
    assert _query(n_api, f"{LATENCY}_bucket") == []
    assert _query(n_api, "django_db_query_duration_seconds_count") == []
    assert _value(n_api, n_proc, n_log, 'histogram_count(django_db_query_duration_seconds{job="django"})') > 0
    # Medians: the native one (few-percent buckets) inside the classic bucket holding the classic one.
    c_median = _value(c_api, c_proc, c_log, f"histogram_quantile(0.5, {LATENCY}_bucket{SELECTOR})")
    n_median = _value(n_api, n_proc, n_log, f"histogram_quantile(0.5, {LATENCY}{SELECTOR})")
    bounds = [float(s["metric"]["le"]) for s in _query(c_api, f"{LATENCY}_bucket{SELECTOR}")]
    bounds = sorted(bounds)
    upper = next(b for b in bounds if b >= c_median)
    lower = max([0.0, *[b for b in bounds if b < upper]])
    assert lower <= n_median <= upper, (lower, n_median, c_median, upper)


def test_native_rate_quantile_by_view_has_no_le(both):
    (n_api, n_proc, n_log), _ = both
    _value(n_api, n_proc, n_log, f"histogram_count({LATENCY}{SELECTOR})", REQUESTS)
    # The examples' native rule: no le, no _bucket; a rate needs two scrapes in its window.
    promql = f'histogram_quantile(0.99, sum by (view) (rate({LATENCY}{{job="django"}}[1m])))'
    result = _wait(
        promql,
        lambda: [r for r in _query(n_api, promql) if r["metric"].get("view") == "item-list"],
        n_proc,
        n_log,
    )
    assert '"le"' not in json.dumps(result)


def test_native_rules_pass_promtool_and_record_in_prometheus(both):
    (api, proc, log), _ = both
    check = subprocess.run(
        [_tool("promtool"), "check", "rules", str(NATIVE_RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for record in (
        'job_view:django_http_request_latency_seconds:native_p99_5m{view="item-list"}',
        "job:django_http_request_latency_seconds:native_count_rate5m",
        "job:django_http_request_latency_seconds:native_fraction_le_250ms_5m",
    ):
        _wait(record, lambda record=record: _query(api, record), proc, log)


def _exprs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from ([v] if k == "expr" else _exprs(v))
    elif isinstance(node, list):
        for v in node:
            yield from _exprs(v)


def test_native_dashboard_is_generated_and_its_latency_queries_answer(both):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dashboard", ROOT / "scripts" / "native_histograms" / "dashboard.py"
    )
    dashboard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dashboard)
    source = json.loads(dashboard.SOURCE.read_text())
    board = json.loads(NATIVE_DASHBOARD.read_text())
    assert list(_exprs(board)) == [dashboard._native(e) for e in _exprs(source)], "run the generator"
    (api, proc, log), _ = both
    quantiles = [e for e in _exprs(board) if e.startswith("histogram_quantile")]
    assert quantiles and not any("_bucket" in e or " le" in e for e in quantiles)
    for expr in quantiles:
        promql = expr.replace("$job", ".*").replace("$__rate_interval", "1m")
        _query(api, promql)  # valid PromQL on a native-histogram Prometheus
    by_view = (
        next(e for e in quantiles if "by (view)" in e).replace("$job", ".*").replace("$__rate_interval", "1m")
    )
    _wait(by_view, lambda: _query(api, by_view), proc, log)
