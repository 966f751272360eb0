#!/usr/bin/env bash
# asv's runner over benchmarks/ (asv.conf.json) in this environment: `asv run --python=same`.
# asv refuses to run on a machine it has not described in ~/.asv-machine.json, which a fresh
# clone on a new machine (or CI) lacks: describe it first with asv's detected values
# (`asv machine --yes`), and only then, so a description edited by hand is kept.
# The side-by-side table (bare Django, ours compiled and pure, upstream 2.5.0 measured in one
# run, with instruction counts) is `python -m benchmarks`, not asv.
# Usage: scripts/bench_asv.sh [asv run arguments, e.g. --quick --bench 'LocMemGet']
# Env: ASV_PYTHON (default .venv/bin/python): the package installed in it (make build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${ASV_PYTHON:-.venv/bin/python}
if ! "$PY" -c 'import asv' 2>/dev/null; then
  "$PY" -m pip install -q "asv>=0.6"
fi
if ! "$PY" -c 'from asv.machine import Machine, MachineCollection as M
M.load(Machine.get_unique_machine_name())' 2>/dev/null; then
  "$PY" -m asv machine --yes >/dev/null
  echo "bench_asv: described this machine for asv in ~/.asv-machine.json (asv machine --yes)"
fi
exec "$PY" -m asv run --python=same "$@"
