"""The scrape: rendering big families, and reading a multiprocess directory full of dead workers.

Single process (``scrape_<kind>_<n>``): one labelled family of ``n`` children
(a counter, or a 15-bucket histogram), every child written. ``compiled`` and
``pure``: our metric classes rendered the way the view renders them
(``text_format.render``); ``bare`` and ``upstream``: prometheus_client's own
classes (what django-prometheus 2.5.0 uses) and ``generate_latest``. The
``scrape_collector_*`` cases render our registry with ``generate_latest``, the
path user code takes and the one our view took before the compiled writer:
the same registry, the same bytes, side by side.

Multiprocess (``mp_scrape_dead_<n>``): ``n`` dead workers' files (one counter
and one histogram file each, 20 views x 2 methods, prometheus_client's
format) plus one live worker; ours: ``aggregate_registry`` + ``render``
(compaction at scrape time off, so every case reads every file), bare and
upstream: ``MultiProcessCollector`` + ``generate_latest``.
``mp_scrape_compacted_<n>``: the same history after ``compact()``.

Memory per child: ``python -m benchmarks.bench_scrape --memory`` (tracemalloc, 100,000
children of a labelled counter and of a 15-bucket histogram, after a text and a protobuf
scrape, label strings excluded; ``--prometheus-client`` for prometheus_client's own
classes), by where the bytes go; and asv's ``track_*`` below.

Speed-ups, issue 28's measurement: ``python -m benchmarks.bench_scrape --ratios``
(one process, interleaved, median of 7; ``DJANGO_PROMETHEUS_NO_EXTENSIONS=1``
for the pure core): 10,000 labelled children of a counter, a gauge and a
15-bucket histogram rendered through the ``/metrics`` view (text 0.0.4, then
protobuf) against prometheus_client's ``generate_latest`` of its own metric
with the same children and values; and the multiprocess merge of 1,000 dead
workers' files (before compaction: ``AggregateCollector(compact_dead=False)``
rendered as the view renders it) against ``MultiProcessCollector`` +
``generate_latest``. Each row: both medians and their ratio. ``--ratios --cpu``: the same
with this process's CPU time instead of wall time (a shared machine's waits for a core
left out of both sides).
"""

from __future__ import annotations

import functools
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from typing import Any

from ._harness import IMPLS, Case, Op, prepare

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SIZES = (1_000, 10_000, 100_000)
DEAD = (10, 100, 1_000, 10_000)
LES = [*(repr(float(b)) for b in BUCKETS), "+Inf"]


def _settings(impl: str) -> dict[str, Any]:
    return {"INSTALLED_APPS": [], "DATABASES": {}, "USE_TZ": True}


def _classes(impl: str) -> tuple[Any, Any]:
    if impl in ("compiled", "pure"):
        from django_prometheus import metrics

        return metrics.Counter, metrics.Histogram
    import prometheus_client

    return prometheus_client.Counter, prometheus_client.Histogram


def _gauge_class(impl: str) -> Any:
    if impl in ("compiled", "pure"):
        from django_prometheus import metrics

        return metrics.Gauge
    import prometheus_client

    return prometheus_client.Gauge


def _renderer(impl: str) -> Any:
    if impl in ("compiled", "pure"):
        from django_prometheus import text_format

        return text_format.render
    from prometheus_client import generate_latest

    return generate_latest


def _family(impl: str, kind: str, n: int, registry: Any = None) -> Any:
    from prometheus_client import CollectorRegistry

    counter, histogram = _classes(impl)
    registry = CollectorRegistry() if registry is None else registry
    rnd = random.Random(n)
    if kind == "counter":
        m = counter("django_bench_requests_total", "Requests.", ["view", "method"], registry=registry)
        for i in range(n):
            m.labels(f"app.views.view_{i}", "GET").inc(rnd.randint(1, 1000))
    elif kind in ("gauge", "gauge_float"):
        # Gauges of whole numbers (in flight, pool sizes, migrations), as ours hold; "gauge_float":
        # arbitrary doubles, whose shortest repr (CPython's dtoa) is most of their cost.
        m = _gauge_class(impl)("django_bench_in_flight", "In flight.", ["view", "method"], registry=registry)
        for i in range(n):
            m.labels(f"app.views.view_{i}", "GET").set(
                rnd.random() * 100 if kind == "gauge_float" else rnd.randint(0, 1000)
            )
    else:
        m = histogram("django_bench_latency_seconds", "Latency.", ["view", "method"], registry=registry,
                      buckets=BUCKETS)  # fmt: skip
        for i in range(n):
            child = m.labels(f"app.views.view_{i}", "GET")
            for _ in range(3):
                child.observe(rnd.random() * 3)
    return registry


def _scrape_case(kind: str, n: int) -> Case:
    def build(impl: str) -> Op:
        registry, render = _family(impl, kind, n), _renderer(impl)
        return lambda: render(registry)

    return Case(f"scrape_{kind}_{n // 1000}k", _settings, build, warmup=2)


def _collector_case(kind: str, n: int) -> Case:
    def build(impl: str) -> Op:
        if impl not in ("compiled", "pure"):
            raise NotImplementedError("the Collector path of our metric classes")
        from prometheus_client import generate_latest

        registry = _family(impl, kind, n)
        return lambda: generate_latest(registry)

    return Case(f"scrape_collector_{kind}_{n // 1000}k", _settings, build, warmup=2)


# --- Multiprocess ---------------------------------------------------------------


def _dead_dir(n: int, compacted: bool) -> str:
    """A directory with ``n`` dead workers' files (made once, kept in the temp dir between probes)."""
    base = os.path.join(tempfile.gettempdir(), f"dp-bench-scrape-dead-{n}")
    ready = os.path.join(base, ".ready")
    if not os.path.exists(ready):
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        _write_dead(base, n)
        open(ready, "w").close()
    if not compacted:
        return base
    target = base + "-compacted"
    done = os.path.join(target, ".ready")
    if not os.path.exists(done):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(base, target)
        from django_prometheus import multiprocess

        multiprocess.compact(target)
        open(done, "w").close()
    return target


def _write_dead(directory: str, n: int) -> None:
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    rnd = random.Random(n)
    keys_c = [mmap_key("django_c", "django_c_total", ["view", "method"], [f"v{v}", m], "Requests.")
              for v in range(20) for m in ("GET", "POST")]  # fmt: skip
    keys_h = []
    for v in range(20):
        for m in ("GET", "POST"):
            labels = ["view", "method", "le"]
            keys_h += [
                mmap_key("django_h", "django_h_bucket", labels, [f"v{v}", m, le], "Latency.") for le in LES
            ]
            keys_h.append(mmap_key("django_h", "django_h_sum", ["view", "method"], [f"v{v}", m], "Latency."))
    for pid in range(100_000, 100_000 + n + 1):
        for typ, keys in (("counter", keys_c), ("histogram", keys_h)):
            f = MmapedDict(os.path.join(directory, f"{typ}_django_{pid}.db"))
            for key in keys:
                f.write_value(key, float(rnd.randint(0, 9)), 0.0)
            f.close()


def _mp_case(n: int, compacted: bool) -> Case:
    def build(impl: str) -> Op:
        from prometheus_client import CollectorRegistry, generate_latest

        if impl in ("compiled", "pure"):
            from django_prometheus import multiprocess, text_format

            directory = _dead_dir(n, compacted)
            registry = CollectorRegistry()
            registry.register(multiprocess.AggregateCollector(directory, compact_dead=False))
            return lambda: text_format.render(registry)
        if compacted:
            raise NotImplementedError("prometheus_client never compacts")
        from prometheus_client.multiprocess import MultiProcessCollector

        directory = _dead_dir(n, False)

        def op() -> bytes:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)
            return generate_latest(registry)

        return op

    return Case(f"mp_scrape_{'compacted' if compacted else 'dead'}_{n}", _settings, build, warmup=2)


# --- Exemplars (PROMETHEUS_EXEMPLARS) -----------------------------------------------
#
# ``observe_histogram``: one observation into a labelled latency child, exemplars off
# (ours: the one branch they add). ``observe_histogram_exemplars``: the same with a
# recording OpenTelemetry span current; ours capture its ids in the cell, bare and
# upstream are prometheus_client's ``observe(amount, exemplar=...)`` with the ids read
# per call, as a user would write it. ``http_wsgi_traced[_exemplars]``: bench_http's
# request with a real SDK span around it (every impl), exemplars off then on.


def _recording_span() -> Any:
    try:
        from opentelemetry import context, trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError as exc:
        raise NotImplementedError("opentelemetry-sdk is not installed here") from exc
    span = TracerProvider().get_tracer("benchmarks").start_span("request")
    context.attach(trace.set_span_in_context(span))  # current for the rest of the probe
    return span


def _observe_case(with_exemplars: bool) -> Case:
    def build(impl: str) -> Op:
        counter, histogram = _classes(impl)
        from prometheus_client import CollectorRegistry

        m = histogram("django_bench_latency_seconds", "Latency.", ["view", "method"],
                      registry=CollectorRegistry(), buckets=BUCKETS)  # fmt: skip
        child = m.labels("app.views.view", "GET")
        if not with_exemplars:
            return lambda: child.observe(0.3)
        _recording_span()
        if impl in ("compiled", "pure"):
            from django_prometheus.http import exemplars

            m.set_exemplar_capture(exemplars.capture())
            return lambda: child.observe(0.3)
        from opentelemetry.trace import get_current_span

        def op() -> None:
            ctx = get_current_span().get_span_context()
            child.observe(
                0.3, {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}
            )

        return op

    return Case("observe_histogram" + ("_exemplars" if with_exemplars else ""), _settings, build)


class TracingMiddleware:
    """A real OpenTelemetry SDK span around each request (the benchmark's stand-in for an instrumentation)."""

    def __init__(self, get_response: Any) -> None:
        from opentelemetry.sdk.trace import TracerProvider

        self.get_response = get_response
        self.tracer = TracerProvider().get_tracer("benchmarks")

    def __call__(self, request: Any) -> Any:
        with self.tracer.start_as_current_span("request"):
            return self.get_response(request)


def _traced_case(with_exemplars: bool) -> Case:
    from . import bench_http

    def settings(impl: str) -> dict[str, Any]:
        s = bench_http._settings(impl)
        s["MIDDLEWARE"] = [f"{__name__}.TracingMiddleware", *s["MIDDLEWARE"]]
        s["PROMETHEUS_EXEMPLARS"] = with_exemplars
        return s

    def build(impl: str) -> Op:
        try:
            import opentelemetry.sdk.trace  # noqa: F401
        except ImportError as exc:
            raise NotImplementedError("opentelemetry-sdk is not installed here") from exc
        return bench_http._wsgi_op({})

    return Case("http_wsgi_traced" + ("_exemplars" if with_exemplars else ""), settings, build)


def _protobuf_case(kind: str, n: int) -> Case:
    """Ours: the protobuf exposition (``protobuf.render``); bare, upstream: ``generate_latest`` (text)."""

    def build(impl: str) -> Op:
        registry = _family(impl, kind, n)
        if impl not in ("compiled", "pure"):
            return lambda: _renderer(impl)(registry)
        from django_prometheus import protobuf

        return lambda: protobuf.render(registry)

    return Case(f"scrape_protobuf_{kind}_{n // 1000}k", _settings, build, warmup=2)


CASES = [
    *(_scrape_case(kind, n) for kind in ("counter", "histogram") for n in SIZES[:2]),
    _scrape_case("gauge", 10_000),
    _scrape_case("gauge_float", 10_000),
    *(_protobuf_case(kind, 10_000) for kind in ("counter", "gauge", "histogram")),
    *(_collector_case(kind, 10_000) for kind in ("counter", "histogram")),
    *(_mp_case(n, False) for n in DEAD[:3]),
    *(_mp_case(n, True) for n in DEAD),
    _observe_case(False),
    _observe_case(True),
    _traced_case(False),
    _traced_case(True),
]


# --- Memory per child -------------------------------------------------------------


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def memory_per_child(impl: str, kind: str, n: int = 100_000) -> dict[str, float]:
    """tracemalloc bytes per labelled child, by where they go; label strings excluded.

    Everything the process keeps for ``n`` children of one labelled family made through
    ``labels()`` (``children``), and what the writer keeps after one text scrape
    (``text``) and one protobuf scrape (``protobuf``; ours only). ``cell`` and
    ``tuple``: ``n`` bare cells and label-value tuples of the same kind, made apart;
    ``family``: the rest of ``children`` (the pure core's dict entry; the compiled core keeps
    no tuple: ``children - cell`` is its family table's share). ``total``: all of it.
    The label strings exist before the child (the caller's) and are not counted.
    """
    counter, histogram = _classes(impl)
    from prometheus_client import CollectorRegistry

    values = [(f"app.views.view_{i}", "GET") for i in range(n)]
    registry = CollectorRegistry()
    if kind == "counter":
        m = counter("django_mem_total", "m", ["view", "method"], registry=registry)
    else:
        m = histogram("django_mem_seconds", "m", ["view", "method"], registry=registry, buckets=BUCKETS)
    m.labels("warm", "GET")
    text, proto = _renderer(impl), None
    if impl in ("compiled", "pure"):
        from django_prometheus import protobuf

        proto = protobuf.render
    text(registry)  # first-scrape caches of the registry itself
    if proto is not None:
        proto(registry)
    tracemalloc.start()
    try:
        b0 = _traced()
        for v in values:
            m.labels(*v)
        b1 = _traced()
        text(registry)
        b2 = _traced()
        if proto is not None:
            proto(registry)
        b3 = _traced()
        one = m.labels("warm", "GET")
        cells = [type(one)() if kind == "counter" else type(one)(BUCKETS) for _ in range(n)] if impl in (
            "compiled", "pure") else []  # fmt: skip
        b4 = _traced()
        tuples = [tuple(str(x) for x in v) for v in values]
        b5 = _traced()
    finally:
        tracemalloc.stop()
    del cells, tuples
    out = {
        "children": (b1 - b0) / n,
        "text": (b2 - b1) / n,
        "protobuf": (b3 - b2) / n,
        "total": (b3 - b0) / n,
        "tuple": (b5 - b4 - 8 * n) / n,  # (minus the list's slots)
    }
    if impl in ("compiled", "pure"):
        out["cell"] = (b4 - b3 - 8 * n) / n
        out["family"] = out["children"] - out["cell"] - out["tuple"]
    return out


def bytes_per_child(impl: str, kind: str, n: int = 100_000) -> float:
    """Everything kept per labelled child after a text and a protobuf scrape (``memory_per_child``)."""
    return memory_per_child(impl, kind, n)["total"]


def _memory_main() -> None:
    impl = "pure" if os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS") else "compiled"
    if "--prometheus-client" in sys.argv:
        impl = "bare"
    n = 100_000
    prepare(Case("memory", _settings, lambda i: lambda: None), impl)
    print(f"bytes per labelled child, {n:,} children, tracemalloc, label strings excluded; core: {impl}")
    for kind in ("counter", "histogram"):
        m = memory_per_child(impl, kind, n)
        if impl == "bare":
            print(f"{kind:9} {m['total']:6.0f} B (the child {m['children']:.0f}, of it the label tuple "
                  f"{m['tuple']:.0f}; the text scrape keeps {m['text']:.0f})")  # fmt: skip
            continue
        if impl == "compiled":  # the family's own table keeps no tuple: the rest is the table's
            family = f"family table {m['children'] - m['cell']:.0f} (no label tuple)"
        else:
            family = f"label tuple {m['tuple']:.0f}, family dict {m['family']:.0f}"
        print(f"{kind:9} {m['total']:6.0f} B: cell {m['cell']:.0f}, {family}, "
              f"writer after a text scrape {m['text']:.0f}, "
              f"after a protobuf scrape {m['protobuf']:.0f}")  # fmt: skip


# --- Speed-ups in one process (issue 28) ------------------------------------------

PROTOBUF_ACCEPT = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"


def _median_seconds(ops: dict[str, Op], rounds: int, clock: Any = time.perf_counter) -> dict[str, float]:
    """Each op timed ``rounds`` times, interleaved (one of each per round); the median seconds of each."""
    samples: dict[str, list[float]] = {k: [] for k in ops}
    for op in ops.values():  # one warm-up call each (first-scrape caches, page cache)
        op()
    for _ in range(rounds):
        for k, op in ops.items():
            t0 = clock()
            op()
            samples[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def _view(accept: str | None) -> Op:
    """One scrape through ``ExportToDjangoView`` (the ``/metrics`` view) with this ``Accept``."""
    from django.test import RequestFactory

    from django_prometheus.exports import ExportToDjangoView

    extra = {"HTTP_ACCEPT": accept} if accept else {}
    request = RequestFactory().get("/metrics", **extra)

    def op() -> bytes:
        response = ExportToDjangoView(request)
        assert response.status_code == 200
        return response.content

    return op


def ratios(
    n: int = 10_000, dead: int = 1_000, rounds: int = 7, clock: Any = time.perf_counter
) -> list[tuple[str, float, float]]:
    """(row, prometheus_client's median seconds, ours), for the rows of ``--ratios``."""
    import prometheus_client
    from prometheus_client import CollectorRegistry, generate_latest

    from django_prometheus import multiprocess, text_format

    # The view serves prometheus_client's default registry: only the family being measured in it.
    default = prometheus_client.REGISTRY
    for collector in list(default._collector_to_names):
        default.unregister(collector)
    rows = []
    for kind in ("counter", "gauge", "histogram", "gauge_float"):
        theirs = _family("bare", kind, n)
        _family("compiled", kind, n, registry=default)
        times = _median_seconds(
            {
                "theirs": functools.partial(generate_latest, theirs),
                "text": _view(None),
                "protobuf": _view(PROTOBUF_ACCEPT),
            },
            rounds,
            clock,
        )
        label = "gauge (arbitrary float values)" if kind == "gauge_float" else kind
        rows.append((f"{label}, text", times["theirs"], times["text"]))
        rows.append((f"{label}, protobuf", times["theirs"], times["protobuf"]))
        for collector in list(default._collector_to_names):
            default.unregister(collector)
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = _dead_dir(dead, False)

    def upstream_merge() -> bytes:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)

    ours = CollectorRegistry()
    ours.register(multiprocess.AggregateCollector(directory, compact_dead=False))
    merges = {"theirs": upstream_merge, "ours": lambda: text_format.render(ours)}
    times = _median_seconds(merges, rounds, clock)
    rows.append((f"multiprocess merge, {dead:,} dead workers", times["theirs"], times["ours"]))
    return rows


def _ratios_main() -> None:
    impl = "pure" if os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS") else "compiled"
    prepare(Case("ratios", _settings, lambda i: lambda: None), impl)
    from django_prometheus._core import _expo

    core = "compiled" if _expo.USE_EXTENSIONS else "pure"
    # --cpu: this process's CPU time, which a busy shared machine's waits for a core leave out.
    cpu = "--cpu" in sys.argv
    clock = time.process_time if cpu else time.perf_counter
    kind = "CPU" if cpu else "wall"
    print(f"10,000 labelled children; median of 7, one process; core: {core}; {kind} time")
    print(f"{'':38} {'prometheus_client':>18} {'ours':>10} {'speed-up':>9}")
    for row, theirs, ours in ratios(clock=clock):
        print(f"{row:38} {theirs * 1e3:15.1f} ms {ours * 1e3:7.2f} ms {theirs / ours:8.1f}x", flush=True)


# --- asv ----------------------------------------------------------------------------


class Scrape:
    """Render one family of n labelled children, per implementation (asv)."""

    params = (IMPLS, ("counter", "histogram"), SIZES)
    param_names = ["impl", "kind", "children"]
    timeout = 600

    def setup(self, impl: str, kind: str, children: int) -> None:
        self.op = prepare(_scrape_case(kind, children), impl)

    def time_scrape(self, impl: str, kind: str, children: int) -> None:
        self.op()


class MultiprocessScrape:
    """Scrape a multiprocess directory with n dead workers' files, before and after compaction (asv)."""

    params = (IMPLS, DEAD, (False, True))
    param_names = ["impl", "dead_workers", "compacted"]
    timeout = 1200

    def setup(self, impl: str, dead_workers: int, compacted: bool) -> None:
        self.op = prepare(_mp_case(dead_workers, compacted), impl)

    def time_scrape(self, impl: str, dead_workers: int, compacted: bool) -> None:
        self.op()


class MemoryPerChild:
    """tracemalloc bytes per labelled child (asv)."""

    params = (("compiled", "pure", "bare"), ("counter", "histogram"))
    param_names = ["impl", "kind"]

    def setup(self, impl: str, kind: str) -> None:
        prepare(Case("memory", _settings, lambda i: lambda: None), impl)

    def track_bytes_per_child(self, impl: str, kind: str) -> float:
        return bytes_per_child(impl, kind, 10_000)


if __name__ == "__main__":
    if "--ratios" in sys.argv:
        _ratios_main()
    else:
        _memory_main()
