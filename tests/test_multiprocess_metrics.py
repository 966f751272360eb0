"""Our metric classes in multiprocess mode aggregate exactly like prometheus_client's own.

The mode is decided at import, so each scenario runs in a fresh interpreter with
PROMETHEUS_MULTIPROC_DIR set (and the core this test run uses).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

SCENARIO = textwrap.dedent(
    """
    import os, sys, time, warnings
    kind, pidfile = sys.argv[1], sys.argv[2]
    if kind == "ours":
        from django_prometheus.metrics import Counter, Gauge, Histogram
        from django_prometheus._core import _cells
        assert _cells.USE_EXTENSIONS is (os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS", "") in ("", "0"))
    else:
        from prometheus_client import Counter, Gauge, Histogram

    c = Counter("django_thing_total", "Things.", ["view", "method"], namespace="ns")
    plain = Counter("django_plain", "Plain.")
    h = Histogram("django_lat_seconds", "Latency.", ["view"], buckets=(0.1, 1))
    hu = Histogram("django_body_bytes", "Sizes.", buckets=(1, 4, 16))
    g = Gauge("django_migrations_applied_total", "Applied.", ["connection"], multiprocess_mode="mostrecent")
    ga = Gauge("django_per_process", "Per process.")
    modes = ["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum"]
    modes += ["mostrecent", "livemostrecent"]
    gauges = {m: Gauge(f"django_g_{m}", m, ["k"], multiprocess_mode=m) for m in modes}

    def work(n):
        c.labels("a", "GET").inc(3 * n)
        c.labels(view="b", method="POST").inc(n)
        plain.inc(2 * n)
        for v in (0.05, 0.5, 5.0)[:n + 1]:
            h.labels("a").observe(v)
        hu.observe(3 * n)
        ga.set(10 * n)
        for m, gauge in gauges.items():
            gauge.labels("x").set(5 * n)
            if "mostrecent" not in m:
                gauge.labels("x").inc(n)
                gauge.labels("y").dec(2 * n)

    g.labels("default").set(5)
    work(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # a worker: counts, sets the gauge later, dies
        time.sleep(0.01)
        work(2)
        g.labels("default").set(7)
        os._exit(0)
    os.waitpid(pid, 0)
    with open(pidfile, "w") as f:
        f.write(str(pid))
    """
)


def run_scenario(kind: str, directory, tmp_path) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    pidfile = tmp_path / f"{kind}.pid"
    subprocess.run([sys.executable, "-c", SCENARIO, kind, str(pidfile)], env=env, check=True, timeout=60)
    return int(pidfile.read_text())


def aggregate(directory) -> list[str]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    text = generate_latest(registry).decode()
    return sorted(re.sub(r'pid="\d+"', 'pid="N"', text).splitlines())


@pytest.fixture
def dirs(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    return ours, theirs


def test_aggregate_is_identical_to_prometheus_client_metrics(dirs, tmp_path):
    ours, theirs = dirs
    run_scenario("ours", ours, tmp_path)
    run_scenario("theirs", theirs, tmp_path)
    assert aggregate(ours) == aggregate(theirs)
    lines = aggregate(ours)
    assert 'ns_django_thing_total{method="GET",view="a"} 9.0' in lines  # 3 + 6, two processes
    assert 'django_lat_seconds_count{view="a"} 5.0' in lines
    # A "mostrecent" gauge is one series, the newest value: it does not multiply per worker.
    assert [x for x in lines if x.startswith("django_migrations_applied_total{")] == [
        'django_migrations_applied_total{connection="default"} 7.0'
    ]
    assert 'django_g_livesum{k="x"} 18.0' in lines  # 5 + 1 in the parent, 10 + 2 in the dead child
    assert 'django_g_livemostrecent{k="x"} 10.0' in lines


def test_a_dead_workers_counts_stay_after_mark_process_dead(dirs, tmp_path):
    ours, _ = dirs
    child = run_scenario("ours", ours, tmp_path)
    before = aggregate(ours)
    mark_process_dead(child, path=str(ours))
    assert aggregate(ours) == before
    assert "django_plain_total 6.0" in before


def test_users_own_prometheus_client_metrics_aggregate_next_to_ours(tmp_path):
    script = textwrap.dedent(
        """
        import prometheus_client
        from django_prometheus.metrics import Counter
        Counter("django_ours", "Ours.").inc(2)
        prometheus_client.Counter("user_things", "Theirs.", ["k"]).labels("x").inc(3)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two processes
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    lines = aggregate(tmp_path)
    assert "django_ours_total 4.0" in lines
    assert 'user_things_total{k="x"} 6.0' in lines


def test_lower_case_variable_also_selects_multiprocess_mode(tmp_path):
    script = "from django_prometheus import metrics; print(metrics.MULTIPROCESS_DIR)"
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    lower = {**env, "prometheus_multiproc_dir": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=lower, check=True, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == str(tmp_path)
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "None"
