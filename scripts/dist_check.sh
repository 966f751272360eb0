#!/usr/bin/env bash
# The release path, proven locally (what .github/workflows/wheels.yml does on CI):
#   1. python -m build --sdist
#   2. a compiled wheel built FROM that sdist (not from the work tree), and a pure
#      py3-none-any wheel from the same sdist with DJANGO_PROMETHEUS_NO_EXTENSIONS=1
#   3. each installed into a fresh virtualenv whose PATH has no Cython and no compiler;
#      the compiled wheel must import its compiled core, the pure one the twin, and
#      both must count a cache get and serve it at /metrics;
#   4. both are the django-prometheus-compiled distribution, and with upstream's
#      django-prometheus 2.5.0 installed next to ours `check` warns (W001) until the
#      README's migration recipe (uninstall it, reinstall ours) clears it.
# Usage: scripts/dist_check.sh [python]   (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-${PYTHON:-python3}}
OUT=${DIST_CHECK_DIR:-build/dist-check}
ROOT=$PWD

step() { printf '\n== dist-check: %s\n' "$*"; }
die() { echo "dist-check: FAIL: $*" >&2; exit 1; }
# The files in a wheel, one a line (a new machine has no unzip).
names() { "$PYTHON" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$1"; }

rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

step "build tools in $OUT/tools"
"$PYTHON" -m venv "$OUT/tools"
"$OUT/tools/bin/python" -m pip install -q build 2>&1 | { grep -v "^WARNING: Location" || true; }

step "sdist"
"$OUT/tools/bin/python" -m build --sdist --outdir "$OUT/sdist" . >"$OUT/sdist.log" 2>&1 || {
  tail -30 "$OUT/sdist.log"; die "sdist build"; }
SDIST=$(ls "$OUT"/sdist/*.tar.gz)
echo "$SDIST"
# (listings go to files: `grep -q` on a pipe would SIGPIPE the lister under pipefail)
tar tzf "$SDIST" >"$OUT/sdist.list"
grep -q '/_core/_cells_c\.pyx$' "$OUT/sdist.list" || die "the sdist lacks _core/_cells_c.pyx"
if grep -qE '\.(so|pyd)$' "$OUT/sdist.list"; then die "the sdist carries a compiled object"; fi

step "compiled wheel built from the sdist"
"$OUT/tools/bin/python" -m build --wheel --outdir "$OUT/wheel" "$SDIST" >"$OUT/wheel.log" 2>&1 || {
  tail -30 "$OUT/wheel.log"; die "wheel build from the sdist"; }
grep -q 'building the COMPILED' "$OUT/wheel.log" || die "setup.py did not build the compiled core"
WHEEL=$(ls "$OUT"/wheel/*.whl)
echo "$WHEEL"
[[ $WHEEL != *-none-any.whl ]] || die "the compiled wheel is tagged pure"
names "$WHEEL" >"$OUT/wheel.list"
grep -qE 'django_prometheus/_core/_cells_c\..*(so|pyd)$' "$OUT/wheel.list" || die "no extension in the wheel"
"$OUT/tools/bin/python" -m pip install -q auditwheel 2>&1 | { grep -v "^WARNING: Location" || true; }
"$OUT/tools/bin/python" - "$WHEEL" <<'PY' || die "extension modules not stripped"
import os, sys, zipfile
wheel = sys.argv[1]
with zipfile.ZipFile(wheel) as z:
    mods = [(i.filename.rsplit("/", 1)[-1], i.file_size) for i in z.infolist() if i.filename.endswith((".so", ".pyd"))]
print(f"wheel: {os.path.getsize(wheel):,} bytes compressed; extension modules:")
for name, size in mods:
    print(f"  {name}: {size:,} bytes")
# Stripped modules are a few hundred KB each; an unstripped _cells_c is over 2 MB.
big = [name for name, size in mods if size > 1_000_000]
sys.exit(f"unstripped extension modules in the wheel: {big}" if big else 0)
PY
"$OUT/tools/bin/auditwheel" show "$WHEEL" | tee "$OUT/auditwheel.txt"

step "pure wheel built from the sdist (DJANGO_PROMETHEUS_NO_EXTENSIONS=1)"
DJANGO_PROMETHEUS_NO_EXTENSIONS=1 "$OUT/tools/bin/python" -m build --wheel --outdir "$OUT/pure" "$SDIST" \
  >"$OUT/pure.log" 2>&1 || { tail -30 "$OUT/pure.log"; die "pure wheel build"; }
PURE=$(ls "$OUT"/pure/*.whl)
echo "$PURE"
[[ $PURE == *-py3-none-any.whl ]] || die "the pure wheel is not py3-none-any"
names "$PURE" >"$OUT/pure.list"
if grep -qE '\.(so|pyd)$' "$OUT/pure.list"; then die "the pure wheel carries a compiled object"; fi

# A fresh venv, a PATH with nothing but the venv, and compilers that refuse: installing a
# wheel must need none of it (and --only-binary forbids building any dependency).
install_fresh() { # venv wheel
  "$PYTHON" -m venv "$1"
  env PATH="$1/bin" CC=/bin/false CXX=/bin/false \
    "$1/bin/python" -m pip install -q --only-binary :all: "$2" 'pytest>=8' 'pytest-django>=4.8' 'djangorestframework>=3.15' \
    2>&1 | { grep -v "^WARNING: Location" || true; }
  env PATH="$1/bin" "$BASH" -c 'for t in cc gcc clang cython cythonize; do
    if command -v "$t" >/dev/null; then echo "$t is on PATH"; exit 1; fi; done' || die "tool on PATH"
  if "$1/bin/python" -c 'import Cython' 2>/dev/null; then die "Cython is importable in $1"; fi
}

# Run from an empty directory so nothing in the work tree can shadow the installed package.
SMOKE=$(cat <<'PY'
import sys
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django_prometheus"],
    CACHES={"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}},
    ROOT_URLCONF="django_prometheus.urls",
    ALLOWED_HOSTS=["*"],
)
django.setup()
import django_prometheus
from django.core.cache import cache
from django.test import Client
from django_prometheus._core import _cells

cache.set("k", 0)
assert cache.get("k") == 0 and cache.get("absent", "d") == "d"
body = Client().get("/metrics").content.decode()
assert 'django_cache_get_hits_total{backend="locmem"} 1.0' in body, body
assert 'django_cache_get_misses_total{backend="locmem"} 1.0' in body, body
print(f"django_prometheus {django_prometheus.__version__} from {django_prometheus.__file__}")
print(f"core: {'compiled' if _cells.USE_EXTENSIONS else 'pure'} -> {_cells._impl.__file__}")
print(f"Django {django.__version__}, Python {sys.version.split()[0]}")
want = sys.argv[1]
assert _cells.USE_EXTENSIONS is (want == "compiled"), f"expected the {want} core"
PY
)

step "fresh venv + compiled wheel (no Cython, no compiler)"
install_fresh "$OUT/venv-compiled" "$WHEEL"
mkdir -p "$OUT/empty"
(cd "$OUT/empty" && env PATH="$OUT/venv-compiled/bin" "$OUT/venv-compiled/bin/python" -c "$SMOKE" compiled)
"$OUT/venv-compiled/bin/python" -c 'import django_prometheus._core._cells as c, sys
f = c._impl.__file__
sys.exit(0 if c.USE_EXTENSIONS and f.endswith((".so", ".pyd")) and "site-packages" in f else f"not the wheel core: {f}")'
step "the core's tests, against the installed wheel"
(cd "$ROOT" && env PATH="$OUT/venv-compiled/bin" "$OUT/venv-compiled/bin/python" -m pytest -q tests/test_core_*.py \
  2>&1 | tail -3)

step "the distribution is django-prometheus-compiled (django-prometheus on PyPI is upstream's)"
case "$(basename "$SDIST")/$(basename "$WHEEL")/$(basename "$PURE")" in
  django_prometheus_compiled-*/django_prometheus_compiled-*/django_prometheus_compiled-*) ;;
  *) die "artefacts not named django_prometheus_compiled-*: $SDIST $WHEEL $PURE" ;;
esac
CHECK=$(cat <<'PY'
import django
from django.conf import settings
from importlib import metadata

settings.configure(INSTALLED_APPS=["django_prometheus"], SECRET_KEY="x")
django.setup()
from django.core.management import call_command

for name in ("django-prometheus-compiled", "django-prometheus"):
    try:
        print(f"installed: {name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"not installed: {name}")
call_command("check")
PY
)
check_in() { # venv -> the check's output (stdout and stderr)
  (cd "$OUT/empty" && env PATH="$1/bin" "$1/bin/python" -c "$CHECK" 2>&1)
}
out=$(check_in "$OUT/venv-compiled")
echo "$out"
grep -q "^installed: django-prometheus-compiled " <<<"$out" || die "the wheel does not install django-prometheus-compiled"
grep -q "^not installed: django-prometheus$" <<<"$out" || die "the wheel installs a django-prometheus distribution"
if grep -q W001 <<<"$out"; then die "W001 with only our distribution installed"; fi

step "upstream's django-prometheus 2.5.0 installed next to ours: check warns (W001)"
env PATH="$OUT/venv-compiled/bin" "$OUT/venv-compiled/bin/python" -m pip install -q --no-deps \
  "django-prometheus==2.5.0" 2>&1 | { grep -v "^WARNING: Location" || true; }
env PATH="$OUT/venv-compiled/bin" "$OUT/venv-compiled/bin/python" -m pip install -q --no-deps --force-reinstall \
  "$WHEEL" 2>&1 | { grep -v "^WARNING: Location" || true; }
out=$(check_in "$OUT/venv-compiled")
echo "$out"
grep -q "^installed: django-prometheus 2.5.0$" <<<"$out" || die "upstream's distribution is not installed"
grep -q "django_prometheus.W001" <<<"$out" || die "no W001 with both distributions installed"

step "the README's way out: uninstall django-prometheus, reinstall ours; check is clean, the smoke passes"
env PATH="$OUT/venv-compiled/bin" "$OUT/venv-compiled/bin/python" -m pip uninstall -q -y django-prometheus
env PATH="$OUT/venv-compiled/bin" "$OUT/venv-compiled/bin/python" -m pip install -q --no-deps --force-reinstall \
  "$WHEEL" 2>&1 | { grep -v "^WARNING: Location" || true; }
out=$(check_in "$OUT/venv-compiled")
echo "$out"
if grep -q W001 <<<"$out"; then die "W001 after uninstalling django-prometheus"; fi
(cd "$OUT/empty" && env PATH="$OUT/venv-compiled/bin" "$OUT/venv-compiled/bin/python" -c "$SMOKE" compiled)

step "fresh venv + pure wheel"
install_fresh "$OUT/venv-pure" "$PURE"
(cd "$OUT/empty" && env PATH="$OUT/venv-pure/bin" "$OUT/venv-pure/bin/python" -c "$SMOKE" pure)

step "OK: sdist -> compiled wheel (compiled core imported) and pure wheel, both working, as django-prometheus-compiled"
