"""The HTTP middlewares under threads: one gunicorn gthread worker with 8 threads, exact counts.

The server serves tests/http_project on 127.0.0.1 from this interpreter (on a
free-threaded build its worker must run with the GIL still disabled once
Django, the middlewares and the compiled core are loaded; a gunicorn hook
writes what it saw). Eight client threads send a fixed mix at once, so every
per-(view, method, status) child is created and incremented concurrently.
"""

from __future__ import annotations

import os
import sysconfig
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus.middleware import Metrics
from tests.servers import STARTUP_SECONDS, free_port, serve

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
THREADS = 8
ROUNDS = int(os.environ.get("DP_THREAD_HTTP_ROUNDS") or 40)  # per client thread, 6 requests each

GIL_HOOK = """
import sys

def post_worker_init(worker):
    state = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    with open({path!r}, "w") as f:
        f.write(str(state))
"""


@contextmanager
def _gunicorn_gthread(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text(GIL_HOOK.format(path=str(tmp_path / "gil")))
    args = ["gunicorn", "tests.http_project.wsgi:application", "-c", str(conf)]
    args += ["-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread", "--threads", str(THREADS)]
    # Keep-alive past any stall of a starved client: an idle connection closed under a client
    # that is sending its next request is a "server disconnected" error, not a count.
    args += ["--keep-alive", "300"]
    log = tmp_path / "gunicorn.log"
    # The worker must keep the GIL off on its own: PYTHON_GIL is not inherited.
    with serve(args, port, log, "tests.http_project.settings", drop=("PYTHON_GIL",)) as base:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (tmp_path / "gil").exists():  # the master listens before the worker is ready
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn's worker did not start within {STARTUP_SECONDS}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield base


def test_middleware_counts_exactly_under_gunicorn_gthread_8_threads(tmp_path):
    errors: list[BaseException] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    with _gunicorn_gthread(tmp_path) as base:
        gil = (tmp_path / "gil").read_text()
        if FREE_THREADED:
            assert gil == "False", "the worker re-enabled the GIL"
        barrier = threading.Barrier(THREADS)

        def client(i: int) -> None:
            mine: dict[int, int] = {}
            try:
                with httpx.Client(base_url=base, timeout=60) as c:
                    barrier.wait()
                    for _ in range(ROUNDS):
                        for method, path, body in (
                            ("GET", "/ok", None),
                            ("GET", "/ok", None),
                            ("POST", "/echo", b"x" * 10),
                            ("GET", f"/slug/t{i}", None),
                            ("GET", "/nowhere", None),
                            ("BREW", "/ok", None),
                        ):
                            r = c.request(method, path, content=body)
                            mine[r.status_code] = mine.get(r.status_code, 0) + 1
            except BaseException as exc:
                errors.append(exc)
            with lock:
                for k, v in mine.items():
                    statuses[k] = statuses.get(k, 0) + v

        threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        text = httpx.get(base + "/metrics", timeout=60).text

    n = THREADS * ROUNDS
    assert statuses == {200: 5 * n, 404: n}
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def v(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    total = 6 * n
    assert v("django_http_requests_before_middlewares_total") == total + 1  # + the scrape
    assert v("django_http_responses_before_middlewares_total") == total
    assert v("django_http_requests_latency_including_middlewares_seconds_count") == total
    assert v("django_http_requests_total_by_method_total", method="GET") == 4 * n + 1
    assert v("django_http_requests_total_by_method_total", method="POST") == n
    assert v("django_http_requests_total_by_method_total", method="<invalid method>") == n
    assert v("django_http_requests_total_by_transport_total", transport="http") == total + 1
    assert v("django_http_requests_body_total_bytes_count") == total + 1
    assert v("django_http_requests_body_total_bytes_sum") == 10 * n
    vtm = "django_http_requests_total_by_view_transport_method_total"
    assert v(vtm, view="ok", transport="http", method="GET") == 2 * n
    assert v(vtm, view="ok", transport="http", method="<invalid method>") == n
    assert v(vtm, view="echo", transport="http", method="POST") == n
    assert v(vtm, view="slug", transport="http", method="GET") == n
    assert v("django_http_responses_total_by_status_total", status="200") == 5 * n
    assert v("django_http_responses_total_by_status_total", status="404") == n
    svm = "django_http_responses_total_by_status_view_method_total"
    assert v(svm, status="200", view="ok", method="GET") == 2 * n
    assert v(svm, status="200", view="ok", method="<invalid method>") == n
    assert v(svm, status="200", view="slug", method="GET") == n
    assert v(svm, status="404", view="<unnamed view>", method="GET") == n
    assert v("django_http_responses_total_by_charset_total", charset="utf-8") == total
    lat = "django_http_requests_latency_seconds_by_view_method_count"
    assert v(lat, view="ok", method="GET") == 2 * n
    assert v(lat, view="echo", method="POST") == n
    assert v(lat, view="<unnamed view>", method="GET") == n
    assert v("django_http_requests_unknown_latency_total") == 0


class _OwnRegistryMetrics(Metrics):
    """Registers into a registry of its own: a second instance would be a duplicate there."""

    registry = CollectorRegistry()

    def register(self):
        # Construction takes a while (here: a sleep, letting the other threads in even on a GIL build).
        time.sleep(0.05)
        super().register()

    def register_metric(self, metric_cls, name, documentation, labelnames=(), **kwargs):
        return metric_cls(name, documentation, labelnames=labelnames, registry=self.registry, **kwargs)


def test_metrics_get_instance_builds_one_instance_when_threads_race():
    # Middlewares built at once by several threads (lazy handlers, threaded test servers):
    # a second Metrics() would register every family twice and raise.
    results: list[object] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def build() -> None:
        try:
            barrier.wait()
            results.append(_OwnRegistryMetrics.get_instance())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(results) == THREADS and all(r is results[0] for r in results)
