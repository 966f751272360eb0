"""One measurement in a fresh interpreter: ``python -m benchmarks._probe CASE IMPL MODE N [MIN_SECONDS]``.

MODE ``time``: N repeats of a calibrated loop, ns/op each.
MODE ``count``: for callgrind, N is a comma-separated list of loop counts K1,K2,...:
after the warm-up, one segment per K (K calls, then ``gc.collect()``, so the
garbage of those K calls is freed inside their segment), each segment ended by
a call to ``os.getloadavg()``, the marker the runner gives callgrind as
``--dump-before``: every segment lands in its own dump, all in one process.
Prints one JSON line on stdout; exits 3 with the reason on stderr when IMPL
cannot run in this interpreter.

Where the probe's instructions go depends on the process' memory layout, and
that depends on everything the interpreter allocates before the case starts:
the environment, ``argv``, the executable's path, the working directory,
what stdin is, whether a module is compiled or read from its ``.pyc``. In
CPython 3.12 the type attribute cache is indexed by the *address* of the
attribute name, so a few bytes more of environment move the interned names,
change which lookups collide and shift a request's count by a few thousand
instructions (measured: 713,784 vs 715,766 vs 717,488 for one build of
``http_wsgi``, only the launch differing). The runner therefore starts every
probe the same way, :func:`probe_command` in :func:`probe_env` from the
repository root with stdin ``/dev/null``, after compiling ``benchmarks/``;
a count run started otherwise says so on stderr, with the command that
counts as the runner does. Any code change moves the layout as well (the
same build in other layouts: 715,576 to 718,453), which ``--layouts N``
averages over.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ._harness import core_in_use, find_case, prepare

ROOT = Path(__file__).resolve().parent.parent
#: Variables a probe inherits (the DB cases' service settings); everything else is dropped.
PASSED_PREFIXES = ("DP_",)
#: What every probe's environment holds besides those.
FIXED_ENV = {"LANG": "C.UTF-8", "PATH": os.defpath, "PYTHONHASHSEED": "0"}
#: Padding that shifts the memory layout by its length (``probe_env(layout=N)``).
LAYOUT_VAR = "DP_BENCH_LAYOUT"
#: Set by valgrind's Debian wrapper script (and its shell) or by Python's locale coercion,
#: the same on every run: not the caller's doing.
NOT_THE_CALLERS = frozenset(
    ("GLIBCPP_FORCE_NEW", "GLIBCXX_FORCE_NEW", "LD_LIBRARY_PATH", "LD_PRELOAD", "PWD", "LC_CTYPE")
)

# A fixed count, not a duration: every count run must do identical warm-up.
WARMUP_CALLS = 2_000
#: The function whose entry ends a counted segment (``valgrind --dump-before=`` it).
MARKER = "getloadavg"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def probe_env(environ: Mapping[str, str] = os.environ, layout: int = 0) -> dict[str, str]:
    """The environment a probe runs in: :data:`FIXED_ENV`, the ``DP_*`` variables, sorted.

    ``layout`` > 0 adds :data:`LAYOUT_VAR` of that many bytes: the same
    measurement in a memory layout shifted by that much (see the runner's
    ``--layouts``).
    """
    passed = {k: v for k, v in environ.items() if k.startswith(PASSED_PREFIXES) and k != LAYOUT_VAR}
    if layout:
        passed[LAYOUT_VAR] = "x" * layout
    return dict(sorted((FIXED_ENV | passed).items()))


def probe_command(python: str, *args: object) -> list[str]:
    """``python -m benchmarks._probe ARGS`` with ``python`` absolute; run it from :data:`ROOT`, stdin null."""
    return [os.path.abspath(python), "-m", "benchmarks._probe", *map(str, args)]


def _launch_drift() -> list[str]:
    """How this process was started unlike the runner's probes (empty: the same way)."""
    drift = []
    here = {k: v for k, v in os.environ.items() if k not in NOT_THE_CALLERS}
    wanted = probe_env(here, len(here.get(LAYOUT_VAR, "")))
    if here != wanted:
        extra = sorted(set(here) - set(wanted))
        differ = sorted(k for k in wanted if here.get(k) != wanted[k])
        drift.append(f"environment (extra: {', '.join(extra) or '-'}; differing: {', '.join(differ) or '-'})")
    if not os.path.isabs(sys.orig_argv[0]):
        drift.append(f"a relative interpreter path {sys.orig_argv[0]!r}")
    if Path.cwd() != ROOT:
        drift.append(f"the working directory {os.getcwd()!r}")
    try:
        null = os.path.samestat(os.fstat(0), os.stat(os.devnull))
    except OSError:  # stdin closed
        null = False
    if not null:
        drift.append("stdin not /dev/null")
    return drift


class _LoopTimer:
    """``timeit.Timer``'s ``timeit(number)`` for a coroutine function: ``number`` awaits, one loop run."""

    def __init__(self, aop: Callable[[], Awaitable[object]]) -> None:
        self._aop = aop
        self._loop = asyncio.new_event_loop()

    async def _repeat(self, number: int) -> float:
        aop, clock = self._aop, time.perf_counter
        start = clock()
        for _ in range(number):
            await aop()
        return clock() - start

    def timeit(self, number: int = 1_000_000) -> float:
        # The GC off while timing, as timeit.Timer does.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._loop.run_until_complete(self._repeat(number))
        finally:
            if enabled:
                gc.enable()


def _calibrated_ns(timer: timeit.Timer | _LoopTimer, repeat: int, min_seconds: float) -> list[float]:
    number = 1
    while (elapsed := timer.timeit(number)) < min_seconds:
        # Jump towards the target, but at most 100x: one early sample is noisy.
        number *= min(100, max(2, int(1.2 * min_seconds / max(elapsed, 1e-9))))
    return [timer.timeit(number) / number * 1e9 for _ in range(repeat)]


def _segments(timer: timeit.Timer | _LoopTimer, counts: list[int]) -> None:
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
    timer = _LoopTimer(op) if case.is_async else timeit.Timer(op)  # type: ignore[arg-type]
    timer.timeit(min(WARMUP_CALLS, case.warmup))
    result: dict[str, Any] = {"core": core_in_use()}
    if mode == "count":
        if drift := _launch_drift():
            cmd = " ".join(
                [
                    "env -i",
                    *(f"{k}={v}" for k, v in probe_env().items()),
                    "valgrind ...",
                    *probe_command(sys.orig_argv[0], case_name, impl, mode, n),
                    "</dev/null",
                ]
            )
            print(
                f"warning: counting with {'; '.join(drift)}: instructions per op can differ from the "
                f"runner's by thousands; the runner's way, from {ROOT}: {cmd}",
                file=sys.stderr,
            )
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
