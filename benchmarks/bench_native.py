"""Native histograms: what an observation and a scrape cost with the native part.

``native_observe_classic`` / ``native_observe``: one observation (0.3) into a labelled
15-bucket child, without and with the native part (ours; bare and upstream:
prometheus_client's classic histogram, which has no native part). Side by side in one
run, so the ratio of the two rows is the native part's cost.

``native_http_wsgi_off`` / ``native_http_wsgi``: bench_http's default WSGI request, with
``PROMETHEUS_NATIVE_HISTOGRAMS`` off and on (its latency and body-size histograms observe
into their native parts too).

``native_mp_http_wsgi``: bench_multiprocess' ``mp_http_wsgi`` request with the setting on
(the native parts written through to ``native_django_<pid>.native``).

``native_scrape_text_10k`` / ``native_scrape_protobuf_10k``: one family of 10,000
labelled native+classic children (20 lognormal observations each), rendered as the
exporters render it: the text format (``text_format.render``, classic only) and the
protobuf one (``protobuf.render``, classic and native). Ours only.

The scrape in one process: ``python -m benchmarks.bench_native --ratios [--cpu]`` builds that
family once and times the text and the protobuf scrape of it interleaved (one of each per
round, median of 7), in wall time or, with ``--cpu``, this process's CPU time (the steadier
clock on a shared machine), and prints their ratio.

Memory and sizes: ``python -m benchmarks.bench_native --memory`` prints the bytes per
native child (tracemalloc) for a lognormal latency distribution at schema 3, and the
bytes and series of one scrape of the 10,000-child family, text vs protobuf.
"""

from __future__ import annotations

import math
import os
import random
import sys
import tracemalloc
from typing import Any

from ._harness import Case, Op, prepare

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CHILDREN = 10_000


def _settings(impl: str) -> dict[str, Any]:
    return {"INSTALLED_APPS": [], "DATABASES": {}, "USE_TZ": True}


def _latencies(rnd: random.Random, n: int) -> list[float]:
    # A web latency: median 50 ms, a long right tail (lognormal, sigma 1).
    return [math.exp(rnd.gauss(math.log(0.05), 1.0)) for _ in range(n)]


def _histogram(impl: str, native: bool, registry: Any) -> Any:
    if impl in ("compiled", "pure"):
        from django_prometheus import metrics

        return metrics.Histogram("django_bench_latency_seconds", "Latency.", ["view", "method"],
                                 registry=registry, buckets=BUCKETS, native=native)  # fmt: skip
    if native:
        raise NotImplementedError("prometheus_client has no native histograms")
    import prometheus_client

    return prometheus_client.Histogram("django_bench_latency_seconds", "Latency.", ["view", "method"],
                                       registry=registry, buckets=BUCKETS)  # fmt: skip


def _observe_case(native: bool) -> Case:
    def build(impl: str) -> Op:
        from prometheus_client import CollectorRegistry

        child = _histogram(impl, native, CollectorRegistry()).labels("app.views.view", "GET")
        for v in _latencies(random.Random(1), 200):  # a populated child, as in production
            child.observe(v)
        return lambda: child.observe(0.3)

    return Case("native_observe" if native else "native_observe_classic", _settings, build)


def family(impl: str, n: int = CHILDREN) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    m = _histogram(impl, True, registry)
    rnd = random.Random(n)
    for i in range(n):
        child = m.labels(f"app.views.view_{i}", "GET")
        for v in _latencies(rnd, 20):
            child.observe(v)
    return registry


def _scrape_case(fmt: str) -> Case:
    def build(impl: str) -> Op:
        if impl not in ("compiled", "pure"):
            raise NotImplementedError("ours only: prometheus_client has no native histograms")
        registry = family(impl)
        if fmt == "text":
            from django_prometheus import text_format

            return lambda: text_format.render(registry)
        from django_prometheus import protobuf

        return lambda: protobuf.render(registry)

    return Case(f"native_scrape_{fmt}_10k", _settings, build, warmup=2)


def _http_case(native: bool) -> Case:
    # bench_http's default WSGI request (every upstream family), the setting off then on.
    from . import bench_http

    def settings(impl: str) -> dict[str, Any]:
        s = bench_http._settings(impl)
        if native and impl in ("compiled", "pure"):
            s["PROMETHEUS_NATIVE_HISTOGRAMS"] = True
        return s

    def build(impl: str) -> Op:
        return bench_http._wsgi_op({})

    return Case("native_http_wsgi" + ("" if native else "_off"), settings, build)


def _mp_http_case() -> Case:
    # bench_multiprocess' request (multiprocess mode) with the setting on: its row next to
    # mp_http_wsgi's is what native parts written through to their files cost per request.
    from . import bench_multiprocess

    def settings(impl: str) -> dict[str, Any]:
        s = bench_multiprocess._http_settings(impl)
        if impl in ("compiled", "pure"):
            s["PROMETHEUS_NATIVE_HISTOGRAMS"] = True
        return s

    def build(impl: str) -> Op:
        op = bench_multiprocess._build_http(impl)
        if impl in ("compiled", "pure") and not any(
            f.startswith("native_django_") for f in os.listdir(os.environ[bench_multiprocess.ENV])
        ):
            raise RuntimeError("no native histogram file was written")
        return op

    return Case("native_mp_http_wsgi", settings, build)


CASES = [
    _observe_case(False),
    _observe_case(True),
    _scrape_case("text"),
    _scrape_case("protobuf"),
    _http_case(False),
    _http_case(True),
    _mp_http_case(),
]


# --- Memory and sizes -------------------------------------------------------------


def native_bytes_per_child(n: int = 2_000, observations: int = 1_000) -> tuple[float, float]:
    """tracemalloc bytes per native part (lognormal latencies, schema 3), and populated buckets."""
    from django_prometheus._core import _native

    rnd = random.Random(7)
    samples = [_latencies(rnd, observations) for _ in range(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    parts = []
    for values in samples:
        part = _native.NativeHistogram(3, 2.0**-128, 160)
        for v in values:
            part.observe(v)
        parts.append(part)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    buckets = sum(len(p.positive()) for p in parts) / n
    return (after - before - 8 * n) / n, buckets  # minus our own list's slots


def _memory_main() -> None:
    impl = "pure" if os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS") else "compiled"
    prepare(Case("memory", _settings, lambda i: lambda: None), impl)
    per_child, buckets = native_bytes_per_child()
    print(f"{impl:9} native part: {per_child:6.0f} B per child, {buckets:.1f} populated buckets (schema 3)")
    from django_prometheus import protobuf, text_format

    registry = family(impl)
    text = text_format.render(registry)
    proto = protobuf.render(registry)
    series_text = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    print(f"{impl:9} {CHILDREN} children: text {len(text):,} B, {series_text:,} series; "
          f"protobuf {len(proto):,} B, {CHILDREN:,} native series (+ the classic buckets)")  # fmt: skip


def _ratios_main() -> None:
    import time

    from django_prometheus import protobuf, text_format

    from .bench_scrape import _median_seconds

    impl = "pure" if os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS") else "compiled"
    prepare(Case("ratios", _settings, lambda i: lambda: None), impl)
    cpu = "--cpu" in sys.argv
    registry = family(impl)
    times = _median_seconds(
        {"text": lambda: text_format.render(registry), "protobuf": lambda: protobuf.render(registry)},
        7,
        time.process_time if cpu else time.perf_counter,
    )
    text, proto = times["text"], times["protobuf"]
    print(f"{impl:9} {CHILDREN:,} native+classic children, median of 7 interleaved, "
          f"{'CPU' if cpu else 'wall'} time: text {text * 1e3:.2f} ms, "
          f"protobuf {proto * 1e3:.2f} ms ({proto / text:.2f}x)")  # fmt: skip


if __name__ == "__main__" and "--memory" in sys.argv:
    _memory_main()
elif __name__ == "__main__" and "--ratios" in sys.argv:
    _ratios_main()
