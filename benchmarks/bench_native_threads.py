"""Thread scaling of native histograms: N threads observing one shared classic+native child.

    python -m benchmarks.bench_native_threads [--seconds S] N [N ...]

``bench_threads``' probe (a fresh interpreter per row, N threads released at one
barrier, ops/s per thread and in total, the total relative to the first N) on
these workloads, ours only (prometheus_client has no native histograms):

- ``histogram``: ``bench_threads``' classic-only child, ``observe(0.3)``: the reference.
- ``native``: the same child with a native part (``native=True``), ``observe(0.3)``.
  On a free-threaded build the compiled native part stripes once threads meet in it
  (``_core/_native_c.pyx``), as the classic part does.
- ``native_spread``: the native child, each thread cycling through 64 lognormal
  latencies (schema 3, every bucket populated in the warm-up): the common path
  over many buckets, as a view's latencies are.

On a free-threaded build (``scripts/freethreaded.sh``' venv) the compiled native
part's observers take no lock (``_core/_native_c.pyx``, the gate); the pure twin
takes a ``threading.Lock`` per observation. The classic part of the child is the
striped cell ``bench_threads`` measures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import subprocess
import sys
from typing import Any

from . import bench_threads
from ._harness import Case

CASES: list[Case] = []

WORKLOADS = {w: ("compiled", "pure") for w in ("histogram", "native", "native_spread")}
SPREAD = [math.exp(random.Random(n).gauss(math.log(0.05), 1.0)) for n in range(64)]


def _native_op(workload: str, impl: str) -> Any:
    from prometheus_client import CollectorRegistry

    from django_prometheus import metrics

    hist = metrics.Histogram("bench_seconds", "Bench.", ["view"], registry=CollectorRegistry(), native=True)
    child = hist.labels("v")
    for v in SPREAD:  # every bucket the workloads use exists before the threads start
        child.observe(v)

    # make() runs in each thread: its own bound method and values (floats the thread made, as
    # measured durations are: a literal's constant or a module-level list's floats are objects
    # every thread would share, and each call would write their reference counts).
    def make() -> Any:
        observe = child.observe
        if workload == "native":
            value = float("0.3")
            return lambda: observe(value)
        values = itertools.cycle([float(repr(v)) for v in SPREAD])
        return lambda: observe(next(values))

    make.child = getattr(child, "_cell", child)  # type: ignore[attr-defined]  # the classic part: striped?
    make.native = getattr(make.child, "native", None)  # type: ignore[attr-defined]  # the native part
    bench_threads._last_make = make  # type: ignore[attr-defined]
    return make


def probe(workload: str, impl: str, n: int, seconds: float) -> dict[str, Any]:
    """``bench_threads.probe`` with the native workloads added."""
    base_op = bench_threads._op

    def op(w: str, i: str) -> Any:
        return _native_op(w, i) if w.startswith("native") else base_op(w, i)

    bench_threads._op = op
    for w in ("native", "native_spread"):
        bench_threads.CHUNK[w] = bench_threads.CHUNK["histogram"]
        bench_threads.WARMUP[w] = bench_threads.WARMUP["histogram"]
    result = bench_threads.probe(workload, impl, n, seconds)
    native = getattr(bench_threads, "_last_make", None)
    result["native_striped"] = bool(getattr(getattr(native, "native", None), "_striped", lambda: False)())
    if workload.startswith("native"):
        from django_prometheus._core import _native

        result["native_core"] = "compiled" if _native.USE_EXTENSIONS else "pure"
    return result


def _run_probe(workload: str, impl: str, n: int, seconds: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "DJANGO_PROMETHEUS_NO_EXTENSIONS")}
    env["PYTHONPATH"] = str(bench_threads.ROOT)
    cmd = [sys.executable, "-m", "benchmarks.bench_native_threads", "--probe", workload, impl, str(n)]
    cmd.append(str(seconds))
    out = subprocess.run(cmd, cwd=bench_threads.ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_native_threads", description=__doc__)
    parser.add_argument("threads", nargs="*", type=int, default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS), help="repeatable")
    parser.add_argument("--probe", nargs=4, metavar=("WORKLOAD", "IMPL", "N", "S"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        workload, impl, n, seconds = args.probe
        print(json.dumps(probe(workload, impl, int(n), float(seconds))))
        return 0

    import sysconfig

    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    build = "free-threaded" if ft else "GIL build"
    print(f"# {sys.version.split()[0]} ({build}), {os.cpu_count()} CPUs, {args.seconds:g} s per row,", end="")
    print(f" load average {os.getloadavg()[0]:.2f} at start")
    speedup = f"x {args.threads[0]} thread(s)"
    header = ("workload", "impl", "threads", "ops/s per thread", "ops/s total", speedup, "note")
    rows = []
    for workload in args.workload or list(WORKLOADS):
        for impl in WORKLOADS[workload]:
            base = None
            for n in args.threads:
                r = _run_probe(workload, impl, n, args.seconds)
                total = r["ops"] / r["elapsed"]
                base = base or total
                note = (
                    "GIL enabled"
                    if r["gil"]
                    else ", ".join(k for k in ("striped", "native striped") if r.get(k.replace(" ", "_")))
                )
                figures = (f"{total / n:,.0f}", f"{total:,.0f}", f"{total / base:.2f}")
                rows.append((workload, impl, str(n), *figures, note))
                print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.rjust(w) if 2 <= i <= 5 else c.ljust(w) for i, (c, w) in pairs]
        print("| " + " | ".join(cells) + " |")
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
