"""Instructions our compiled code spends per operation, from a probe's callgrind dumps.

``python -m benchmarks._attribute LATER EARLIER K``: LATER and EARLIER are two
dumps of one ``benchmarks._probe ... count`` run under callgrind (segments of K
operations apart, e.g. ``out.3`` and ``out.2`` of ``count 100,200``, K=100).
Prints, per operation, what ran in our extension modules (their own
instructions) plus what they called outside themselves (inclusive), except the
calls that hand control back to the application: the middleware's
``get_response`` (``Middleware__call`` -> ``PyObject_CallOneArg``) and every call
into a Python function (``_PyFunction_Vectorcall``: the wrapped cache ``get``,
the cursor's ``execute``), whose own instructions are the application's and
whose nested calls into our code are counted where they land.

A whole probe's count moves by up to ~1,500 instructions a request with the
memory layout (see ``_probe``): CPython's attribute cache and dict lookups
collide differently. This count moves only where our own code's lookups miss
that cache (measured: 6,161 to 6,526 a ``http_wsgi`` request over three layouts,
against 6,087 to 10,329 for the whole probe minus bare): the way to compare what
our code does in two processes, e.g. ``http_wsgi`` against ``mp_http_wsgi``. It needs
the compiled core built with its symbols (``DJANGO_PROMETHEUS_KEEP_SYMBOLS=1``).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

#: Our compiled modules' objects, as callgrind names them (their file paths).
OURS = re.compile(r"django_prometheus/_core/_\w+_c\.")
#: Calls out of our code that hand control back to the application (see the docstring).
HANDED_BACK = (
    (re.compile(r"Middleware__call"), re.compile(r"^PyObject_CallOneArg")),
    (re.compile(r""), re.compile(r"^_PyFunction_Vectorcall")),
)


def parse(path: Path) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[str, str]]:
    """A callgrind dump's self cost per function, inclusive cost per call edge, object per function."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
    self_cost: dict[str, int] = defaultdict(int)
    calls: dict[tuple[str, str], int] = defaultdict(int)
    objects: dict[str, str] = {}
    ob = fn = callee = callee_ob = None
    in_call = False

    def name(kind: str, text: str) -> str:
        # Name compression: "(id) name" the first time, "(id)" after.
        m = re.match(r"\((\d+)\)\s*(.*)", text)
        if not m:
            return text
        if m.group(2):
            names[kind][m.group(1)] = m.group(2)
        return names[kind][m.group(1)]

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            if key == "ob":
                ob = name("ob", value)
            elif key == "fn":
                fn = name("fn", value)
                objects[fn] = ob or ""
                callee_ob = None
            elif key == "cob":
                callee_ob = name("ob", value)
            elif key == "cfn":
                callee = name("fn", value)
            elif key == "calls":
                in_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if in_call:
                    calls[fn, callee] += cost  # type: ignore[index]
                    objects.setdefault(callee, callee_ob or ob or "")  # type: ignore[arg-type]
                    in_call, callee_ob = False, None
                else:
                    self_cost[fn] += cost  # type: ignore[index]
    return self_cost, calls, objects


def ours(path: Path) -> dict[str, int]:
    """Our code's instructions in one dump, by line of the breakdown ("self F", "call F -> G")."""
    self_cost, calls, objects = parse(path)

    def mine(fn: str) -> bool:
        return bool(OURS.search(objects.get(fn, "")))

    out: dict[str, int] = defaultdict(int)
    for fn, cost in self_cost.items():
        if mine(fn):
            out[f"self {fn}"] += cost
    for (fn, callee), cost in calls.items():
        if not mine(fn) or mine(callee):
            continue
        base = callee.split("'")[0]  # callgrind marks recursion levels as name'2
        handed_back = any(c.search(fn) and g.search(base) for c, g in HANDED_BACK)
        out[f"{'handed back' if handed_back else 'call'} {fn} -> {callee}"] += cost
    return out


def per_op(later: Path, earlier: Path, k: int) -> dict[str, float]:
    a, b = ours(later), ours(earlier)
    return {key: (a.get(key, 0) - b.get(key, 0)) / k for key in set(a) | set(b)}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    rows = per_op(Path(argv[0]), Path(argv[1]), int(argv[2]))
    counted = {k: v for k, v in rows.items() if not k.startswith("handed back")}
    print(f"{sum(counted.values()):,.0f} instructions per operation in our compiled code")
    for key, value in sorted(rows.items(), key=lambda kv: -abs(kv[1])):
        if abs(value) >= 0.5:
            print(f"{value:12,.0f}  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
