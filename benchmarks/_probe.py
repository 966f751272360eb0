"""One measurement in a fresh interpreter: ``python -m benchmarks._probe CASE IMPL MODE N [MIN_SECONDS]``.

MODE ``time``: N repeats of a calibrated loop, ns/op each.
MODE ``count``: for callgrind, N is a comma-separated list of loop counts K1,K2,...:
after the warm-up, one segment per K (K calls, then ``gc.collect()``, so the
garbage of those K calls is freed inside their segment), each segment ended by
a call to ``os.getloadavg()``, the marker the runner gives callgrind as
``--dump-before``: every segment lands in its own dump, all in one process.
Prints one JSON line on stdout; exits 3 with the reason on stderr when IMPL
cannot run in this interpreter.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import timeit
from importlib import metadata
from typing import Any

from ._harness import core_in_use, find_case, prepare

# A fixed count, not a duration: every count run must do identical warm-up.
WARMUP_CALLS = 2_000
#: The function whose entry ends a counted segment (``valgrind --dump-before=`` it).
MARKER = "getloadavg"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _calibrated_ns(timer: timeit.Timer, repeat: int, min_seconds: float) -> list[float]:
    number = 1
    while (elapsed := timer.timeit(number)) < min_seconds:
        # Jump towards the target, but at most 100x: one early sample is noisy.
        number *= min(100, max(2, int(1.2 * min_seconds / max(elapsed, 1e-9))))
    return [timer.timeit(number) / number * 1e9 for _ in range(repeat)]


def _segments(timer: timeit.Timer, counts: list[int]) -> None:
    gc.collect()
    os.getloadavg()  # the marker: what came before (start-up, warm-up) is its own dump
    for k in counts:
        timer.timeit(k)
        gc.collect()
        os.getloadavg()


def run(case_name: str, impl: str, mode: str, n: str, min_seconds: float = 0.05) -> dict[str, Any]:
    try:
        case = find_case(case_name)
        op = prepare(case, impl)
    except NotImplementedError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(3) from None
    # timeit.Timer turns the GC off while it times, as asv's time_* benchmarks do.
    timer = timeit.Timer(op)
    timer.timeit(min(WARMUP_CALLS, case.warmup))
    result: dict[str, Any] = {"core": core_in_use()}
    if mode == "count":
        _segments(timer, [int(k) for k in n.split(",")])
        return result
    result["samples"] = _calibrated_ns(timer, int(n), min_seconds)
    result["versions"] = {
        "python": platform.python_version(),
        "Django": _version("Django"),
        "prometheus_client": _version("prometheus_client"),
        "django_prometheus": _version("django-prometheus"),
        "prefix": sys.prefix,
    }
    return result


if __name__ == "__main__":
    case_name, impl, mode, n, *min_seconds = sys.argv[1:]
    print(json.dumps(run(case_name, impl, mode, n, *map(float, min_seconds))))
