"""Real servers over loopback in multiprocess mode: every counter sums exactly to what was sent.

gunicorn runs 4 sync workers recycled every ~100 requests, uvicorn 2 ASGI workers;
the project (tests/mp_project) does known cache gets, queries and model writes
per view, and counts a user's own prometheus_client metric too.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.mp_servers import HOST, ROOT, free_port_range, request, start, stop
from tests.servers import Samples, parse_samples, sample_value

# (method, path) -> (view name, status); the plan cycles through it.
ROUTES = {
    ("GET", "/ok"): ("ok", 200),
    ("POST", "/ok"): ("ok", 200),
    ("PUT", "/ok"): ("ok", 200),
    ("DELETE", "/ok"): ("ok", 200),
    ("POST", "/create"): ("create", 201),
    ("GET", "/missing"): ("missing", 404),
    ("PATCH", "/missing"): ("missing", 404),
    ("GET", "/boom"): ("boom", 500),
}
PLAN_CYCLE = [("GET", "/ok")] * 4 + list(ROUTES)


def send_all(port: int, plan: list[tuple[str, str]], threads: int = 4) -> None:
    """Send every request of ``plan``, each on a new connection; fail on any unexpected status."""
    it = iter(list(plan))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                item = next(it, None)
            if item is None or errors:
                return
            try:
                status, _ = request(port, *item)
            except Exception as exc:  # every request must get through: counts are compared exactly
                errors.append(f"{item}: {exc!r}")
                return
            if status != ROUTES[item][1]:
                errors.append(f"{item}: {status}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors[:5]


scrape_text = parse_samples
value = sample_value


def scrape_port(port: int) -> Samples:
    status, body = request(port, "GET", "/metrics")
    assert status == 200
    return parse_samples(body.decode())


def expected_counts(plan):
    per_route = collections.Counter(plan)
    by_view_method = collections.Counter()
    by_status = collections.Counter()
    by_method = collections.Counter()
    for (method, path), n in per_route.items():
        view, status = ROUTES[method, path]
        by_view_method[view, method] += n
        by_status[str(status)] += n
        by_method[method] += n
    return per_route, by_view_method, by_status, by_method


def assert_exact(samples, plan, *, startup_queries: float = 0.0) -> None:
    per_route, by_view_method, by_status, by_method = expected_counts(plan)
    n_ok = sum(n for (m, p), n in per_route.items() if p == "/ok")
    n_create = per_route["POST", "/create"]
    n_boom = per_route["GET", "/boom"]
    assert value(samples, "django_http_requests_before_middlewares_total") == len(plan)
    assert value(samples, "django_http_responses_before_middlewares_total") == len(plan)
    for (view, method), n in by_view_method.items():
        assert value(samples, "django_http_requests_total_by_view_transport_method_total",
                     view=view, transport="http", method=method) == n, (view, method)  # fmt: skip
        assert value(samples, "django_http_requests_latency_seconds_by_view_method_count",
                     view=view, method=method) == n, (view, method)  # fmt: skip
    for method, n in by_method.items():
        assert value(samples, "django_http_requests_total_by_method_total", method=method) == n, method
    for status, n in by_status.items():  # 500s included: the view's exception became a 500 response
        assert value(samples, "django_http_responses_total_by_status_total", status=status) == n, status
    assert value(samples, "django_http_exceptions_total_by_type_total", type="ValueError") == n_boom
    assert value(samples, "django_http_exceptions_total_by_view_total", view="boom") == n_boom
    # Cache: each /ok does one hit and one miss on the real Redis.
    assert value(samples, "django_cache_get_total", backend="native_redis") == 2 * n_ok
    assert value(samples, "django_cache_get_hits_total", backend="native_redis") == n_ok
    assert value(samples, "django_cache_get_misses_total", backend="native_redis") == n_ok
    assert value(samples, "django_cache_get_fail_total", backend="native_redis") == 0
    # Database: one query per /ok and per insert, on a new connection each request.
    db = {"alias": "default", "vendor": "sqlite"}
    assert value(samples, "django_db_execute_total", **db) == n_ok + n_create + startup_queries
    assert value(samples, "django_db_query_duration_seconds_count", **db) == n_ok + n_create + startup_queries
    assert value(samples, "django_model_inserts_total", model="item") == n_create
    # The user's own prometheus_client counter, aggregated next to ours.
    assert value(samples, "mp_user_hits_total", view="ok") == n_ok
    assert value(samples, "mp_user_hits_total", view="create") == n_create


def processes_that_wrote(mp_dir: Path) -> set[str]:
    return {name.rsplit("_", 1)[1][:-3] for name in os.listdir(mp_dir) if name.startswith("counter_django_")}


@pytest.mark.services
@pytest.mark.skipif(
    shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None, reason="no gunicorn"
)
def test_gunicorn_recycled_workers_every_counter_exact(mp_server_project):
    env, mp_dir = mp_server_project
    port, *exporter_ports = free_port_range(13)
    env["MP_PORT_RANGE"] = f"{exporter_ports[0]}-{exporter_ports[-1]}"
    cmd = [sys.executable, "-m", "gunicorn", "tests.mp_project.wsgi:application", "-b", f"{HOST}:{port}",
           "-w", "4", "--max-requests", "100", "--max-requests-jitter", "30",
           "--graceful-timeout", "5"]  # fmt: skip
    proc = start(cmd, env, port, mp_dir.parent / "server.log")
    plan = [PLAN_CYCLE[i % len(PLAN_CYCLE)] for i in range(2000)]
    try:
        send_all(port, plan)
        # The port-range exporters of the live workers: each serves its own worker (as upstream).
        live = []
        for p in exporter_ports:
            try:
                live.append(scrape_port(p))
            except OSError:
                continue
        view = scrape_port(
            port
        )  # the Django view (itself one more GET request, to "prometheus-django-metrics")
    finally:
        err = stop(proc)
    assert len(processes_that_wrote(mp_dir)) > 4, "workers were not recycled during the run"
    assert live, f"no port-range exporter answered; server log:\n{err[-3000:]}"
    for samples in live:
        assert value(samples, "django_http_requests_before_middlewares_total") < len(plan)
    assert_exact_except_scrape(view, plan, startup_queries=0)


@pytest.mark.services
@pytest.mark.skipif(
    shutil.which("uvicorn", path=os.path.dirname(sys.executable)) is None, reason="no uvicorn"
)
def test_uvicorn_asgi_workers_every_counter_exact_and_migration_gauges_once(mp_server_project):
    env, mp_dir = mp_server_project
    env["MP_EXPORT_MIGRATIONS"] = "1"
    startup = startup_queries(env)
    (port,) = free_port_range(1)
    cmd = [sys.executable, "-m", "uvicorn", "tests.mp_project.asgi:application", "--host", HOST,
           "--port", str(port), "--workers", "2", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = start(cmd, env, port, mp_dir.parent / "server.log")
    plan = [PLAN_CYCLE[i % len(PLAN_CYCLE)] for i in range(600)]
    try:
        send_all(port, plan)
        status, body = request(port, "GET", "/metrics")
        assert status == 200
    finally:
        err = stop(proc)
    samples = scrape_text(body.decode())
    workers = processes_that_wrote(mp_dir)
    assert len(workers) == 2, (workers, err[-3000:])
    assert_exact_except_scrape(samples, plan, startup_queries=2 * startup)
    applied = [(k, v) for k, v in samples.items() if k[0] == "django_migrations_applied_total"]
    assert applied == [(("django_migrations_applied_total", frozenset({("connection", "default")})), 1.0)]
    assert value(samples, "django_migrations_unapplied_total", connection="default") == 0.0


def assert_exact_except_scrape(samples, plan, startup_queries: float) -> None:
    """assert_exact() for a sample set that also saw one GET /metrics through the middlewares."""
    adjusted = dict(samples)
    for name, labels in [
        ("django_http_requests_before_middlewares_total", {}),
        ("django_http_requests_total_by_method_total", {"method": "GET"}),
    ]:
        key = (name, frozenset(labels.items()))
        adjusted[key] = adjusted.get(key, 0.0) - 1
    assert_exact(adjusted, plan, startup_queries=startup_queries)


def startup_queries(env: dict) -> float:
    """Queries one process runs once (the migration export, on its first request), in single-process mode."""
    script = (
        "import django; django.setup()\n"
        "from django_prometheus.migrations import export_pending; export_pending()  # a first request\n"
        "from prometheus_client import REGISTRY\n"
        "labels = {'alias': 'default', 'vendor': 'sqlite'}\n"
        "print(REGISTRY.get_sample_value('django_db_execute_total', labels) or 0)"
    )
    single = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run([sys.executable, "-c", script], env=single, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    return float(out.stdout.strip())
