"""Side-by-side runner behind ``python -m benchmarks``: probes, rounds, valgrind, table."""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from statistics import median

from ._harness import IMPLS, Case, load_cases
from ._probe import MARKER, probe_command, probe_env

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_VENV = ROOT / ".venv-upstream"
# Same versions as ours on both sides; the DB drivers only where this env has them (PostgreSQL cases).
UPSTREAM_DISTS = ("django-prometheus", "Django", "prometheus_client", "psycopg", "psycopg-binary")
#: Bytes of padding between the memory layouts a count is repeated in (``--layouts``).
LAYOUT_STEP = 24
# Callgrind runs Python ~50-100x slower: this much native loop time (the middle count) keeps a run short.
CALLGRIND_LOOP_NS = 1e8
HEADER = tuple("case|impl|core|ns/op|×bare|instr/op|×bare|added% time|added% instr|note".split("|"))
NUMERIC = range(3, 9)  # right-aligned columns


@dataclass
class Result:
    case: str
    impl: str
    reason: str | None = None  # why this impl is n/a
    core: str = ""
    samples: list[float] = field(default_factory=list)
    instr: float | None = None  # the mean over the layouts
    instr_layouts: list[float] = field(default_factory=list)
    k: int = 0
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ns(self) -> float | None:
        return median(self.samples) if self.samples else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--case", metavar="PATTERN", help="only cases whose name matches (regex)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter loops")
    parser.add_argument("--rounds", type=int, help="rounds over all implementations")
    parser.add_argument("--no-valgrind", action="store_true", help="skip instruction counts")
    parser.add_argument(
        "--layouts",
        type=int,
        metavar="N",
        help="count in N memory layouts (each padded 24 bytes more) and report the mean (default 1)",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also dump the results")
    parser.add_argument("--plot", metavar="PNG", type=Path, help="also draw the results (needs matplotlib)")
    parser.add_argument(
        "--list", action="store_true", help="print the names of the cases (those --case selects) and exit"
    )
    args = parser.parse_args(argv)

    cases = load_cases(args.case)
    if not cases:
        parser.error(f"no case matches {args.case!r}")
    if args.list:
        for case in cases:
            print(case.name)
        return 0
    rounds = args.rounds or (3 if args.quick else 7)
    repeat, min_seconds = (3, 0.02) if args.quick else (5, 0.05)

    pythons, unavailable = _interpreters()
    # A probe that compiles a module first allocates differently from one that reads its .pyc, and
    # the count moves with that (see _probe): write them now, so every probe reads them.
    compileall.compile_dir(Path(__file__).parent, quiet=1)
    results = {
        (c.name, impl): Result(c.name, impl, reason=unavailable.get(impl)) for c in cases for impl in IMPLS
    }
    for r in range(rounds):
        _log(f"round {r + 1}/{rounds}")
        # Rotate the order too, so no impl always runs right after the same neighbour.
        order = IMPLS[r % len(IMPLS) :] + IMPLS[: r % len(IMPLS)]
        for case in cases:
            for impl in order:
                res = results[case.name, impl]
                if res.reason is None:
                    _measure(res, pythons[impl], repeat, min_seconds)

    valgrind = shutil.which("valgrind") and not args.no_valgrind
    if valgrind:
        layouts = args.layouts or 1
        loop_ns = CALLGRIND_LOOP_NS / (4 if args.quick else 1)
        _count_instructions(cases, results, pythons, loop_ns, layouts)

    print(_report(cases, results, rounds, bool(valgrind)))
    if args.json:
        rows = [asdict(res) | {"ns_median": res.ns} for res in results.values()]
        args.json.write_text(json.dumps({"rounds": rounds, "results": rows}, indent=2) + "\n")
    if args.plot:
        from ._plot import plot

        _log(f"chart: {plot([c.name for c in cases], results, args.plot)}")
    return 0


def _interpreters() -> tuple[dict[str, str], dict[str, str]]:
    """Python per impl, and the reason for each impl that has none."""
    pythons = dict.fromkeys(("bare", "compiled", "pure"), sys.executable)
    unavailable: dict[str, str] = {}
    try:
        pythons["upstream"] = _upstream_python()
    except RuntimeError as exc:
        unavailable["upstream"] = str(exc)
    return pythons, unavailable


def _upstream_python() -> str:
    """``.venv-upstream``'s python with django-prometheus 2.5.0 and our Django and prometheus_client."""
    python = UPSTREAM_VENV / "bin" / "python"
    wanted = [
        platform.python_version(),
        "django-prometheus==2.5.0",
        *(f"{d}=={metadata.version(d)}" for d in UPSTREAM_DISTS[1:] if _installed(d)),
    ]
    if not python.exists():
        _log(f"creating {UPSTREAM_VENV.name} with {sys._base_executable}")
        _run([sys._base_executable, "-m", "venv", "--clear", str(UPSTREAM_VENV)])
    if _upstream_state(python) != wanted:
        _log(f"installing {' '.join(wanted[1:])} into {UPSTREAM_VENV.name}")
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        _run([*pip, *wanted[2:]])
        # --no-deps: 2.5.0 declares Django<6.1, but the comparison is only fair on our Django.
        _run([*pip, "--no-deps", wanted[1]])
        if (state := _upstream_state(python)) != wanted:
            raise RuntimeError(f"{UPSTREAM_VENV.name} has {state}, wanted {wanted}")
    return str(python)


def _upstream_state(python: Path) -> list[str]:
    script = (
        "import platform, sys\nfrom importlib import metadata as m\nprint(platform.python_version())\n"
        "for d in sys.argv[1:]:\n"
        "    try: print(f'{d}=={m.version(d)}')\n"
        "    except m.PackageNotFoundError: print(d)\n"
    )
    dists = [UPSTREAM_DISTS[0], *(d for d in UPSTREAM_DISTS[1:] if _installed(d))]
    return _run([str(python), "-c", script, *dists]).split()


def _installed(dist: str) -> bool:
    """Whether this (our) environment has ``dist``."""
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {errors[0] if errors else _last_line(proc.stderr)}")
    return proc.stdout


def _probe(
    python: str, *args: object, prefix: tuple[str, ...] = (), layout: int = 0
) -> subprocess.CompletedProcess[str]:
    # One environment, argv and directory for every probe, timed or counted: see _probe's docstring.
    cmd = [*prefix, *probe_command(python, *args)]
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env=probe_env(layout=layout),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )


def _measure(res: Result, python: str, repeat: int, min_seconds: float) -> None:
    proc = _probe(python, res.case, res.impl, "time", repeat, min_seconds)
    if proc.returncode == 3:  # the probe's "cannot run here"
        res.reason = _last_line(proc.stderr)
    elif proc.returncode:
        res.reason = f"probe failed: {_last_line(proc.stderr)}"
        _log(f"{res.case}/{res.impl} failed; for the traceback run: {' '.join(map(str, proc.args))}")
    else:
        out = json.loads(proc.stdout.splitlines()[-1])
        res.samples += out["samples"]
        res.core, res.versions = out["core"], out["versions"]


def _count_instructions(
    cases: list[Case],
    results: dict[tuple[str, str], Result],
    pythons: dict[str, str],
    loop_ns: float,
    layouts: int = 1,
) -> None:
    """Instructions per op: the slope over several loop counts, all counted in one callgrind run.

    The loop counts are fixed (the case's ``counts``, or a power of two sized
    from the timing), the inputs are identical, every probe is launched the
    same way (``PYTHONHASHSEED=0``, one environment, stdin, argv and
    directory) and each segment frees its own garbage: two runs of one build
    count the same instructions, give or take a few per op. The slope cancels
    what a segment pays once.

    What stays is luck of layout: CPython's attribute cache collides by the
    addresses of names, so a change anywhere that moves memory by a few bytes
    moves a request's count by up to ~1,500 either way. With ``layouts`` > 1
    each count is repeated with the environment padded by ``LAYOUT_STEP``
    more bytes each time, and ``instr`` is the mean (``instr_layouts`` has
    each one).
    """
    jobs = []
    with (
        tempfile.TemporaryDirectory(prefix="dp-callgrind-") as tmp,
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
    ):
        for case in cases:
            live = [results[case.name, impl] for impl in IMPLS if results[case.name, impl].ns]
            if not live:
                continue
            counts = case.counts or _auto_counts(loop_ns / max(res.ns or 0 for res in live))
            _log(
                f"callgrind {case.name}: K={','.join(map(str, counts))} for {', '.join(r.impl for r in live)}"
            )
            for res in live:
                res.k = sum(counts)
                for layout in range(0, layouts * LAYOUT_STEP, LAYOUT_STEP):
                    out = Path(tmp, f"{case.name}.{res.impl}.{layout}.out")
                    callgrind = (
                        "valgrind",
                        "--tool=callgrind",
                        f"--dump-before={MARKER}",
                        f"--callgrind-out-file={out}",
                    )
                    job = pool.submit(
                        _probe,
                        pythons[res.impl],
                        res.case,
                        res.impl,
                        "count",
                        ",".join(map(str, counts)),
                        prefix=callgrind,
                        layout=layout,
                    )
                    jobs.append((res, counts, out, job))
        for res, counts, out, job in jobs:
            proc = job.result()
            segments = _segment_counts(out, len(counts)) if proc.returncode == 0 else None
            if segments is None:
                _log(f"callgrind failed for {res.case}/{res.impl}: {_last_line(proc.stderr)}")
            else:
                res.instr_layouts.append(_slope(counts, segments))
        for res, *_ in jobs:
            # All layouts or none: a mean over some would not compare with the others.
            if len(res.instr_layouts) == layouts:
                res.instr = sum(res.instr_layouts) / layouts


def _auto_counts(calls: float) -> tuple[int, ...]:
    # A power of two, so a slightly different timing picks the same counts.
    k = 1 << max(6, min(17, int(calls).bit_length() - 1))
    return (k // 2, k, k + k // 2)


def _segment_counts(out: Path, n: int) -> list[int] | None:
    """The instructions of each counted segment: dumps 2..n+1 (dump 1 is start-up and warm-up)."""
    found = []
    for i in range(2, n + 2):
        path = out.with_name(f"{out.name}.{i}")
        match = path.exists() and re.search(r"^summary:\s*(\d+)", path.read_text(), re.M)
        if not match:
            return None
        found.append(int(match.group(1)))
    return found


def _slope(xs: tuple[int, ...], ys: list[int]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def _report(cases: list[Case], results: dict[tuple[str, str], Result], rounds: int, valgrind: bool) -> str:
    n = max((len(r.instr_layouts) for r in results.values()), default=0)
    layouts = f", mean of {n} memory layouts" if n > 1 else ""
    counts = f"callgrind instructions{layouts}, PYTHONHASHSEED=0" if valgrind else "no instruction counts"
    lines = [f"{platform.platform()}, {os.cpu_count()} CPUs; median of {rounds} interleaved rounds; {counts}"]
    for impl in IMPLS:
        if res := next((r for r in results.values() if r.impl == impl and r.versions), None):
            v = res.versions
            lines.append(
                f"  {impl:<9} Python {v['python']}, Django {v['Django']}, "
                f"prometheus_client {v['prometheus_client']}, django_prometheus {v['django_prometheus']}, "
                f"core {res.core}  [{v['prefix']}]"
            )
    rows = [HEADER, *(_row(results, case.name, impl) for case in cases for impl in IMPLS)]
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    table = ["  ".join(_align(i, cells, widths[i]) for i, cells in enumerate(row)).rstrip() for row in rows]
    table.insert(1, "-" * len(table[0]))
    legend = "×bare = impl / bare; added% = (impl - bare) / (upstream - bare), i.e. % of upstream's overhead"
    return "\n".join([*lines, "", *table, "", legend])


def _align(column: int, text: str, width: int) -> str:
    return text.rjust(width) if column in NUMERIC else text.ljust(width)


def _row(results: dict[tuple[str, str], Result], case: str, impl: str) -> tuple[str, ...]:
    res, bare, upstream = (results[case, i] for i in (impl, "bare", "upstream"))
    if res.reason:
        return (case, impl, "", "n/a", "", "", "", "", "", f"n/a ({res.reason})")
    return (
        case,
        impl,
        res.core,
        _fmt(res.ns),
        _ratio(res.ns, bare.ns),
        _fmt(res.instr),
        _ratio(res.instr, bare.instr),
        _added(res.ns, bare.ns, upstream.ns),
        _added(res.instr, bare.instr, upstream.instr),
        _spread(res),
    )


def _spread(res: Result) -> str:
    if res.instr is None or len(res.instr_layouts) < 2:
        return ""
    return f"instr {_fmt(min(res.instr_layouts))}..{_fmt(max(res.instr_layouts))}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _ratio(value: float | None, bare: float | None) -> str:
    return "" if value is None or not bare else f"{value / bare:.2f}"


def _added(value: float | None, bare: float | None, upstream: float | None) -> str:
    if value is None or bare is None or upstream is None or upstream == bare:
        return ""
    return f"{round(100 * (value - bare) / (upstream - bare))}%"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
