#!/usr/bin/env bash
# Compatibility matrix on this machine: every pyenv CPython 3.10-3.13 x every Django
# release line it supports (4.2, 5.2, 6.0, 6.1). Per interpreter: one venv
# (.venv-matrix-3.X), one compiled wheel built from the sdist and installed
# (non-editable); then per Django line: that Django installed, the core, cache and
# middleware tests run on the compiled core; the pure twin runs them once per interpreter.
# Needs Redis and memcached (scripts/services.sh start). Prints a table; exits 1 on any failure.
#
# What CI's time buys (make test runs this after the whole suite on both cores): the compiled
# core is built per interpreter and its C meets each Django line, so it runs on every pair. The
# pure twin is the same Python on every Django line (the Django-facing code is shared with the
# compiled core, which covers the lines): it runs once per interpreter, on that interpreter's
# newest line, or its oldest where the newest is the main suite's own pair. The pair the main
# suite already ran whole on both cores (.venv's Python and Django line) is not run again.
# MATRIX_PURE=all runs the pure twin on every pair, and MATRIX_SKIP_MAIN=0 the main pair too.
# Env: MATRIX_PYTHONS="3.10 3.11 3.12 3.13"  MATRIX_DJANGOS="4.2 5.2 6.0 6.1"
#      MATRIX_TESTS="tests/test_core_cells.py ..."  (default: core, cache, middleware/http tests)
#      MATRIX_PURE=all  MATRIX_SKIP_MAIN=0
set -uo pipefail
cd "$(dirname "$0")/.."
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
PYTHONS=${MATRIX_PYTHONS:-3.10 3.11 3.12 3.13}
DJANGOS=${MATRIX_DJANGOS:-4.2 5.2 6.0 6.1}
OUT=build/matrix
mkdir -p "$OUT"
: >"$OUT/results.txt"

# Django's own support table (https://docs.djangoproject.com/en/dev/faq/install/).
supported() { # python django
  case "$2" in
    4.2) [[ $1 =~ ^3\.(8|9|10|11|12)$ ]] ;;
    5.2) [[ $1 =~ ^3\.(10|11|12|13|14)$ ]] ;;
    6.0 | 6.1) [[ $1 =~ ^3\.(12|13|14)$ ]] ;;
    *) return 1 ;;
  esac
}

# The main suite's pair ("3.12/6.1"), when .venv has run it.
MAIN_PAIR=""
if [[ ${MATRIX_SKIP_MAIN:-1} != 0 && -x .venv/bin/python ]]; then
  MAIN_PAIR=$(.venv/bin/python -c 'import sys, django; print("%d.%d/%d.%d" % (sys.version_info[:2] + django.VERSION[:2]))' 2>/dev/null || true)
fi
# The Django line the pure twin runs on for an interpreter (from the lines it supports).
pure_line() { # python -> django line
  local pyv=$1 dj lines=()
  for dj in $DJANGOS; do supported "$pyv" "$dj" && lines+=("$dj"); done
  ((${#lines[@]})) || return 0
  if [[ "$pyv/${lines[-1]}" == "$MAIN_PAIR" ]]; then echo "${lines[0]}"; else echo "${lines[-1]}"; fi
}

tests=${MATRIX_TESTS:-}
if [[ -z $tests ]]; then
  # Redis topologies (Sentinel, Cluster) test servers, not Python or Django versions: the main run has them.
  tests=$(ls tests/test_core_*.py tests/test_cache*.py tests/test_middleware*.py tests/test_http*.py 2>/dev/null |
    grep -v test_cache_redis_topologies | tr '\n' ' ')
fi
pipq() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
say() { printf '%s\n' "$*" | tee -a "$OUT/results.txt"; }

SYS_PY=$(ls -d "$PYENV_ROOT"/versions/3.12*/bin/python 2>/dev/null | head -1)
SYS_PY=${SYS_PY:-python3}
echo "== matrix: sdist (tests: $tests)"
rm -rf "$OUT/sdist"
if ! "$SYS_PY" -m build --version >/dev/null 2>&1; then
  "$SYS_PY" -m venv "$OUT/tools" && pipq "$OUT/tools/bin/python" -m pip install -q build
  SYS_PY=$OUT/tools/bin/python
fi
"$SYS_PY" -m build --sdist --outdir "$OUT/sdist" . >"$OUT/sdist.log" 2>&1 || { tail -20 "$OUT/sdist.log"; exit 1; }
SDIST=$(ls "$OUT"/sdist/*.tar.gz)

fails=0
for pyv in $PYTHONS; do
  interp=$(ls -d "$PYENV_ROOT"/versions/"$pyv".*/bin/python 2>/dev/null | sort -V | tail -1)
  if [[ -z $interp ]]; then say "python $pyv: not installed under $PYENV_ROOT — skipped"; continue; fi
  venv=.venv-matrix-$pyv
  py=$venv/bin/python
  t0=$SECONDS
  echo "== matrix: $interp -> $venv"
  if [[ ! -x $py ]]; then "$interp" -m venv "$venv"; fi
  # Build deps once per venv; the test extra brings every client library the tests import.
  pipq "$py" -m pip install -q "setuptools>=77" wheel "Cython>=3.1"
  rm -rf "$OUT/wheel-$pyv"
  if ! pipq "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/wheel-$pyv" "$SDIST" >"$OUT/wheel-$pyv.log"; then
    say "python $pyv: wheel build from the sdist FAILED"; fails=$((fails + 1)); continue
  fi
  whl=$(ls "$OUT"/wheel-"$pyv"/*.whl)
  pipq "$py" -m pip install -q --force-reinstall --no-deps "$whl"
  pipq "$py" -m pip install -q "${whl}[test]"
  echo "   venv + wheel from the sdist + test deps: $((SECONDS - t0))s"
  for dj in $DJANGOS; do
    if ! supported "$pyv" "$dj"; then continue; fi
    if [[ "$pyv/$dj" == "$MAIN_PAIR" ]]; then
      say "python $pyv  django $dj: the main suite's pair, run whole on both cores by make test"; continue
    fi
    if ! pipq "$py" -m pip install -q "Django~=$dj.0" >"$OUT/pip-$pyv-$dj.log"; then
      say "python $pyv django $dj: install FAILED (see $OUT/pip-$pyv-$dj.log)"; fails=$((fails + 1)); continue
    fi
    djv=$("$py" -c 'import django; print(django.get_version())')
    cores="compiled"
    [[ ${MATRIX_PURE:-} == all || $dj == "$(pure_line "$pyv")" ]] && cores="compiled pure"
    for core in $cores; do
      nx=""; [[ $core == pure ]] && nx=1
      log=$OUT/pytest-$pyv-$dj-$core.log
      # shellcheck disable=SC2086
      DJANGO_PROMETHEUS_NO_EXTENSIONS=$nx "$py" -m pytest -p no:randomly $tests >"$log" 2>&1
      rc=$?
      summary=$(tail -1 "$log")
      # The header line proves which core ran.
      used=$(grep -o '(compiled core\|(pure core' "$log" | head -1 | tr -d '(')
      if [[ $rc == 0 && $used == "$core core" ]]; then
        say "python $pyv  django $djv  $core: $summary"
      else
        say "python $pyv  django $djv  $core: FAILED ($used; rc=$rc) $summary — see $log"
        grep -E '^(FAILED|ERROR) ' "$log" | head -5 | sed 's/^/      /' | tee -a "$OUT/results.txt"
        fails=$((fails + 1))
      fi
    done
  done
  echo "   python $pyv done in $((SECONDS - t0))s"
done
echo
echo "== matrix results ($SECONDS s)"
cat "$OUT/results.txt"
[[ $fails == 0 ]] || { echo "matrix: $fails failure(s)"; exit 1; }
