"""Type-cache misses of a probe: ``python -m benchmarks._misses CASE IMPL [LAYOUT [HITS]]``.

Runs ``benchmarks._probe CASE IMPL count K...`` launched as the runner
launches it (same argv, environment, directory and stdin, so the same memory
layout; ``LAYOUT`` is the padding ``--layouts`` adds: 0, 24 or 48), under
callgrind with valgrind's gdbserver, and has gdb log every call of CPython's
``find_name_in_mro`` from the second counted segment on: every (type, name)
lookup that missed the cache, with the cache entry it maps to. After ``HITS``
misses (default 160) gdb kills the probe and the misses are printed grouped by
entry: pairs that share an entry and take turns miss on every operation.

CPython 3.12 keeps 4,096 entries indexed by ``(tp_version_tag ^ (address of
the name >> 3)) & 4095``: which pairs share an entry depends on the version
tags (handed out in the order types are first looked up) and on where the
names were allocated, so two builds or two launches that differ by a few
bytes pay different misses for the same code. Needs gdb, valgrind and a
64-bit CPython 3.12 whose ``find_name_in_mro`` has its symbol (it is static);
the offsets below are 3.12's ``PyTypeObject`` and ``PyASCIIObject``.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._harness import find_case
from ._probe import MARKER, ROOT, probe_command, probe_env

#: offsetof(PyTypeObject, tp_version_tag), tp_name, and a compact ASCII str's first character (3.12, 64-bit).
VERSION_TAG, TP_NAME, ASCII_DATA = 24 + 45 * 8, 24, 40

_GDB = """\
set pagination off
set confirm off
set breakpoint pending on
target remote | vgdb --pid={pid}
break {marker}
continue
continue
delete
set $n = 0
break find_name_in_mro
commands
silent
set $n = $n + 1
set $entry = ((*(unsigned int*)($rdi+{tag})) ^ ($rsi>>3)) & 4095
printf "MISS %d %s %s\\n", $entry, *(char**)($rdi+{tp_name}), (char*)($rsi+{data})
if $n >= {hits}
  kill
  quit
end
continue
end
continue
"""


def misses(case_name: str, impl: str, layout: int = 0, hits: int = 160) -> list[tuple[int, str]]:
    """(cache entry, "type.name") of ``hits`` consecutive misses after the probe's first counted segment."""
    case = find_case(case_name)
    counts = ",".join(map(str, case.counts or (100, 200)))
    with tempfile.TemporaryDirectory(prefix="dp-misses-") as tmp:
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--vgdb=yes",
            "--vgdb-error=0",
            f"--dump-before={MARKER}",
            f"--callgrind-out-file={tmp}/out",
        ]
        probe = subprocess.Popen(
            [*valgrind, *probe_command(sys.executable, case_name, impl, "count", counts)],
            cwd=ROOT,
            env=probe_env(layout=layout),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)  # valgrind's gdbserver waits for gdb before the first instruction
            script = Path(tmp, "gdb")
            script.write_text(
                _GDB.format(
                    pid=probe.pid, marker=MARKER, hits=hits, tag=VERSION_TAG, tp_name=TP_NAME, data=ASCII_DATA
                )
            )
            out = subprocess.run(
                ["gdb", "-batch", "-x", str(script), sys.executable],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        finally:
            probe.kill()
            probe.wait()
    return [(int(m[1]), f"{m[2]}.{m[3]}") for m in re.finditer(r"^MISS (\d+) (\S+) (\S*)$", out, re.M)]


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 4:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    case_name, impl, *rest = argv
    layout, hits = (int(rest[0]) if rest else 0), (int(rest[1]) if len(rest) > 1 else 160)
    found = misses(case_name, impl, layout, hits)
    print(f"{len(found)} consecutive misses of {case_name}/{impl}, layout {layout}, by cache entry:")
    by_entry: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for entry, lookup in found:
        by_entry[entry][lookup] += 1
    once: collections.Counter[str] = collections.Counter()
    for entry, lookups in sorted(by_entry.items(), key=lambda kv: -sum(kv[1].values())):
        if sum(lookups.values()) == 1:
            once.update(lookups)  # a name made afresh each time misses wherever it lands
            continue
        for i, (lookup, n) in enumerate(lookups.most_common()):
            print(f"{entry if i == 0 else '':>6} {n:4}  {lookup}")
    if once:
        print(
            f"{'once':>6} {sum(once.values()):4}  in an entry of their own: "
            + ", ".join(f"{k} {n}" for k, n in once.most_common())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
