"""Thread scaling: N threads on shared cells and on requests, ops/s per thread, ours vs prometheus_client.

    python -m benchmarks.bench_threads [--seconds S] [--upstream-python PY] N [N ...]

Each (workload, impl, N) runs in a fresh interpreter (the one running this
script, so on a free-threaded build every impl is measured without the GIL):
N threads are released at one barrier and each calls the operation in a loop
for S seconds; the table gives ops/s per thread and in total, and the total
relative to N=1 (the speed-up; ~N when the operation scales, ~1 when the
threads serialise on a lock or the GIL).

Workloads, one shared labelled child, two ways of calling it:
``counter`` (``inc()``) and ``histogram`` (``observe(v)``) call it through a
bound method each thread takes once (``inc = child.inc``), as code that hoists
the lookup does (and as the compiled middlewares do from C): a call then
writes nothing but the cell. ``counter_attr`` and ``histogram_attr`` call
``child.inc()`` / ``child.observe(v)`` on a child the code keeps: on a
free-threaded 3.13 each such call takes (and drops) a reference to the shared
child, an atomic write to the child's object header from every thread unless
the child is immortal (a striped child is made so: ``_core/_cells_c.pyx``,
``dp_share``). ``counter_labels`` and ``histogram_labels`` call
``family.labels("v").inc()`` / ``.observe(v)``, the plainest user code: the
label lookup on every call, then the child.
``http_wsgi`` is one request through Django's WSGI handler and both
middlewares (the ``bench_http`` case). Impls: ``compiled`` and ``pure``
(ours), ``prometheus_client`` (its own Counter/Histogram, a lock per
increment) for the cells; ``bare`` (no middleware), ``compiled``, ``pure`` and
``upstream`` (django-prometheus 2.5.0, given ``--upstream-python``: a venv of
this same interpreter with it installed) for requests.

``python -m benchmarks.bench_threads --memory``: the bytes a striped child adds
(tracemalloc), counter and 15-bucket histogram, on the running build.

No asv cases here (``CASES`` is empty): the side-by-side runner times one
thread; this module measures how that time holds up when threads share cells.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ._harness import Case

CASES: list[Case] = []

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("compiled", "pure", "prometheus_client")
WORKLOADS = {
    "counter": CELLS,
    "counter_attr": CELLS,
    "counter_labels": CELLS,
    "histogram": CELLS,
    "histogram_attr": CELLS,
    "histogram_labels": CELLS,
    "http_wsgi": ("bare", "compiled", "pure", "upstream"),
}
# Calls between two looks at the clock, and warm-up calls (children, caches, specialised bytecode).
CHUNK = {w: 500 for w in WORKLOADS if w != "http_wsgi"} | {"http_wsgi": 5}
WARMUP = {w: 5000 for w in WORKLOADS if w != "http_wsgi"} | {"http_wsgi": 100}


def _cell_op(workload: str, impl: str) -> Any:
    """A function that makes one thread's operation on the shared child."""
    if impl == "prometheus_client":
        import prometheus_client as pc
    else:
        from django_prometheus import metrics as pc  # type: ignore[no-redef]
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    if workload.startswith("counter"):
        family = pc.Counter("bench", "Bench.", ["view"], registry=registry)
    else:
        family = pc.Histogram("bench_seconds", "Bench.", ["view"], registry=registry)
    child = family.labels("v")

    # make() runs in each thread: the thread's own function, bound method and value (a float
    # the thread made, as a measured duration is; a literal's constant, loaded from a .pyc, is
    # one shared object on a free-threaded 3.13, whose reference count every call writes).
    if workload == "counter":

        def make() -> Any:
            return child.inc

    elif workload == "counter_attr":

        def make() -> Any:
            c = child
            return lambda: c.inc()

    elif workload == "counter_labels":

        def make() -> Any:
            f = family
            return lambda: f.labels("v").inc()

    elif workload == "histogram_labels":

        def make() -> Any:
            f, value = family, float("0.3")
            return lambda: f.labels("v").observe(value)

    elif workload == "histogram":

        def make() -> Any:
            observe, value = child.observe, float("0.3")
            return lambda: observe(value)

    else:

        def make() -> Any:
            h, value = child, float("0.3")
            return lambda: h.observe(value)

    make.child = child  # type: ignore[attr-defined]
    return make


def _op(workload: str, impl: str) -> Any:
    if WORKLOADS[workload] is CELLS:
        return _cell_op(workload, impl)
    from ._harness import find_case, prepare

    op = prepare(find_case(workload), impl)
    return lambda: op


def probe(workload: str, impl: str, n: int, seconds: float) -> dict[str, Any]:
    """Run ``n`` threads for ``seconds`` in this process; total calls and elapsed time."""
    if impl == "pure":
        os.environ["DJANGO_PROMETHEUS_NO_EXTENSIONS"] = "1"
    make = _op(workload, impl)
    chunk = CHUNK[workload]
    op = make()
    for _ in range(WARMUP[workload]):
        op()
    barrier = threading.Barrier(n + 1)
    counts = [0] * n
    stop = [0.0]

    def run(i: int) -> None:
        op = make()
        barrier.wait()
        done = 0
        end = stop[0]
        while True:
            for _ in range(chunk):
                op()
            done += chunk
            if time.perf_counter() >= end:
                break
        counts[i] = done

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    gil = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    # Whether the child striped (our compiled cells on a free-threaded build, under contention).
    striped = getattr(getattr(make, "child", None), "_striped", lambda: False)()
    return {"ops": sum(counts), "elapsed": elapsed, "gil": gil, "striped": striped}


def _run_probe(python: str, workload: str, impl: str, n: int, seconds: float) -> dict[str, Any] | str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "DJANGO_PROMETHEUS_NO_EXTENSIONS")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [python, "-m", "benchmarks.bench_threads", "--probe", workload, impl, str(n), str(seconds)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode == 3:
        return out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "n/a"
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def striped_memory(n: int = 2_000) -> None:
    """Print the tracemalloc bytes that striping adds to a counter and a 15-bucket histogram child."""
    import tracemalloc

    from django_prometheus._core import _cells

    bounds = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
    for kind in ("counter", "histogram"):
        cells = [_cells.Counter() if kind == "counter" else _cells.Histogram(bounds) for _ in range(n)]
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        striped = sum(bool(c._stripe()) for c in cells)
        added = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        stripes = _cells._impl.STRIPES
        print(f"{kind:9} STRIPES={stripes}, {striped}/{n} striped: {added / n:.0f} B more per child")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_threads", description=__doc__)
    parser.add_argument("threads", nargs="*", type=int, default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS), help="repeatable")
    parser.add_argument("--upstream-python", help="a python with django-prometheus 2.5.0 installed")
    parser.add_argument("--memory", action="store_true", help="bytes a striped child adds, then exit")
    parser.add_argument("--probe", nargs=4, metavar=("WORKLOAD", "IMPL", "N", "S"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory:
        striped_memory()
        return 0
    if args.probe:
        workload, impl, n, seconds = args.probe
        try:
            result = probe(workload, impl, int(n), float(seconds))
        except NotImplementedError as exc:
            print(exc, file=sys.stderr)
            return 3
        print(json.dumps(result))
        return 0

    import sysconfig

    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    print(f"# {sys.version.split()[0]} Py_GIL_DISABLED={sysconfig.get_config_var('Py_GIL_DISABLED')}", end="")
    print(f" ({'free-threaded' if ft else 'GIL build'}), {os.cpu_count()} CPUs, {args.seconds:g} s per cell")
    rows = []
    for workload in args.workload or list(WORKLOADS):
        for impl in WORKLOADS[workload]:
            python = sys.executable
            if impl == "upstream":
                if not args.upstream_python:
                    continue
                python = args.upstream_python
            base = None
            for n in args.threads:
                r = _run_probe(python, workload, impl, n, args.seconds)
                if isinstance(r, str):
                    rows.append((workload, impl, str(n), "n/a", "n/a", "n/a", r))
                    break
                total = r["ops"] / r["elapsed"]
                base = base or (total if n == args.threads[0] else None)
                speedup = f"{total / base:.2f}" if base else "-"
                note = "GIL enabled" if r["gil"] else ("striped" if r.get("striped") else "")
                rows.append((workload, impl, str(n), f"{total / n:,.0f}", f"{total:,.0f}", speedup, note))
                print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    speedup_col = f"× {args.threads[0]} thread(s)"
    header = ("workload", "impl", "threads", "ops/s per thread", "ops/s total", speedup_col, "note")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [
            c.rjust(w) if 2 <= i <= 5 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
