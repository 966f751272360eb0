#!/usr/bin/env bash
# The suite on a free-threaded CPython (built with --disable-gil), compiled core and pure twin.
#
#   scripts/freethreaded.sh              interpreter (cached), venv, package, whole suite on both cores
#   scripts/freethreaded.sh interp       only build (or find) the interpreter; prints its path
#   scripts/freethreaded.sh venv         interpreter + venv + package, no tests
#   scripts/freethreaded.sh test [ARGS]  venv, then pytest ARGS (default: the whole suite) on both cores
#   scripts/freethreaded.sh bench [N..]  venv, then benchmarks/bench_threads.py N.. (default 1 2)
#   scripts/freethreaded.sh cached       exit 0 if the interpreter is already built (builds nothing)
#
# The CPython source is upstream's release tarball as Debian ships it (the .orig.tar.xz of the
# python3.14 source package; python3.13 if no suite has 3.14), fetched by apt-get from the Debian
# mirror this machine already uses, with a private apt state under build/ (the system's apt
# configuration is left alone). Built without PGO/LTO (a 2-core box), installed under
# build/freethreaded/python: a second run finds it and takes seconds.
#
# The services (Redis, memcached, PostgreSQL, MariaDB) must be running: scripts/services.sh start.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FT=${FT_DIR:-$ROOT/build/freethreaded}
PREFIX=$FT/python
VENV=$FT/venv
JOBS=${FT_JOBS:-2}
SERIES=${FT_SERIES:-"3.14 3.13"}

log() { printf '== freethreaded: %s\n' "$*" >&2; }

find_interp() {
    local v
    for v in $SERIES; do
        if [[ -x $PREFIX/bin/python${v}t ]] &&
            "$PREFIX/bin/python${v}t" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") else 1)' 2>/dev/null; then
            echo "$PREFIX/bin/python${v}t"
            return 0
        fi
    done
    return 1
}

# The Debian mirror the machine's own apt sources name (deb.debian.org when none is found).
debian_mirror() {
    local uri
    uri=$(grep -hoE '^URIs:\s*\S+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    if [[ -z $uri ]]; then
        uri=$(grep -hoE '^deb\s+(\[[^]]*\]\s+)?\S+/debian/?\s' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $NF}')
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

fetch_source() {
    local apt=$FT/apt mirror pkg v ver
    mirror=$(debian_mirror)
    mkdir -p "$apt/sources.list.d" "$apt/state/lists/partial" "$apt/cache/archives/partial" "$FT/src"
    : >"$apt/sources.list"
    cat >"$apt/sources.list.d/cpython-src.sources" <<EOF
Types: deb-src
URIs: $mirror
Suites: sid forky trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    local -a opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
        -o "Dir::State=$apt/state" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1")
    log "apt-get update (deb-src of sid/forky/trixie from $mirror, private state in $apt)"
    apt-get "${opts[@]}" -q update >&2
    # Newest first; a mirror may list a version whose files it no longer has (404): try the next.
    for v in $SERIES; do
        pkg=python$v
        for ver in $(apt-cache "${opts[@]}" showsrc "$pkg" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -Vru); do
            log "apt-get source --download-only $pkg=$ver"
            if (cd "$FT/src" && apt-get "${opts[@]}" -q source --download-only "$pkg=$ver" >&2); then
                ls "$FT/src/${pkg}_${ver%%-*}".orig.tar.* | grep -v '\.asc$' | head -1
                return 0
            fi
        done
    done
    log "no source package among: $SERIES"
    return 1
}

build_interp() {
    local tarball dir series
    if find_interp >/dev/null; then
        find_interp
        return 0
    fi
    tarball=$(ls -t "$FT"/src/python3.1[34]_*.orig.tar.* 2>/dev/null | grep -v '\.asc$' | head -1 || true)
    if [[ -z $tarball ]]; then
        tarball=$(fetch_source) || exit 1
    fi
    log "building CPython from $tarball (--disable-gil, no PGO/LTO, make -j$JOBS)"
    rm -rf "$FT/build-src"
    mkdir -p "$FT/build-src"
    tar -xf "$tarball" -C "$FT/build-src"
    dir=$(find "$FT/build-src" -mindepth 1 -maxdepth 1 -type d -name 'Python-*' | head -1)
    (
        cd "$dir"
        ./configure --prefix="$PREFIX" --disable-gil --with-ensurepip=install --disable-test-modules >"$FT/configure.log" 2>&1 ||
            { tail -30 "$FT/configure.log" >&2; exit 1; }
        make -j"$JOBS" >"$FT/make.log" 2>&1 || { tail -40 "$FT/make.log" >&2; exit 1; }
        make install >"$FT/install.log" 2>&1 || { tail -40 "$FT/install.log" >&2; exit 1; }
    )
    rm -rf "$FT/build-src"
    find_interp || { log "built, but no free-threaded python in $PREFIX/bin"; exit 1; }
}

# C-extension packages with no free-threaded build: left out of the venv (each would re-enable
# the GIL on import, or has no wheel for 3.13t), and the tests that need them deselected;
# psycopg runs as its pure-Python implementation, mysqlclient is replaced by PyMySQL.
# django-ninja and cloudcoil-models-prometheus-operator: their pydantic-core has no free-threaded
# wheel here, and building it needs crates.io.
SKIP_DISTS=${FT_SKIP_DISTS:-"pylibmc mysqlclient psycopg2-binary psycopg-binary django-ninja cloudcoil-models-prometheus-operator"}
# pytest -k expression for the tests that need one of them.
SKIP_TESTS=${FT_SKIP_TESTS:-"not pylibmc and not psycopg2 and not operator_manifests and not the_schema_check"}

make_venv() {
    local stamp=$VENV/.deps want dists
    want="$(sha256sum pyproject.toml scripts/freethreaded.sh | cut -c1-16 | tr "\n" " ")$SKIP_DISTS"
    if [[ ! -x $VENV/bin/python ]]; then
        log "creating $VENV"
        "$PY" -m venv "$VENV"
    fi
    if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
        # The test set from pyproject.toml, less the skipped distributions.
        dists=$("$VENV/bin/python" - "$SKIP_DISTS" <<'PY'
import re, sys, tomllib
skip = set(sys.argv[1].split())
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["test"]:
    name = re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower()
    if name == "psycopg" and "psycopg-binary" in skip:
        req = req.replace("[binary]", "")  # psycopg's pure-Python implementation, over libpq
    if name not in skip:
        print(req.replace(" ", ""))  # one shell word each ($dists is split on whitespace below)
PY
)
        log "installing build tools and the test set (less: $SKIP_DISTS)"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        # shellcheck disable=SC2086
        "$VENV/bin/python" -m pip install -q "setuptools>=77" wheel "Cython>=3.1" ruff $dists
        if [[ " $SKIP_DISTS " == *" mysqlclient "* ]]; then
            # MariaDB through PyMySQL (pure Python) in mysqlclient's place, as its docs show for
            # Django: loaded as MySQLdb at startup by a .pth line of this venv only.
            "$VENV/bin/python" -m pip install -q PyMySQL
            echo "import pymysql; pymysql.install_as_MySQLdb()" >"$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/dp_mysqldb_is_pymysql.pth"
        fi
        echo "$want" >"$stamp"
    fi
    log "building and installing the package (compiled core) for $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
    "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps --force-reinstall .
    # Every compiled module must keep the GIL off once imported (Py_mod_gil, Cython's
    # freethreading_compatible); a module without it turns the GIL back on for the process.
    env -u PYTHON_GIL "$VENV/bin/python" -W error::RuntimeWarning - <<'PY'
import importlib, pathlib, sys, sysconfig
import django_prometheus._core as core
mods = sorted(p.name.split(".")[0] for p in pathlib.Path(core.__file__).parent.iterdir() if p.suffix == ".so")
assert mods, "no compiled module was installed"
for m in mods:
    importlib.import_module("django_prometheus._core." + m)
print(f"== freethreaded: {sys.version.split()[0]}, Py_GIL_DISABLED={sysconfig.get_config_var('Py_GIL_DISABLED')},",
      f"compiled modules {', '.join(mods)} imported, sys._is_gil_enabled()={sys._is_gil_enabled()}", file=sys.stderr)
sys.exit(1 if sys._is_gil_enabled() else 0)
PY
}

upstream_venv() {
    # django-prometheus 2.5.0 on the same interpreter, for the request rows of bench_threads.
    local up=$FT/venv-upstream
    if [[ ! -f $up/.deps ]]; then
        log "creating $up with django-prometheus 2.5.0"
        "$PY" -m venv "$up"
        "$up/bin/python" -m pip install -q \
            "Django==$("$VENV/bin/python" -c 'import django; print(django.__version__)')" \
            "prometheus_client==$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("prometheus_client"))')"
        "$up/bin/python" -m pip install -q --no-deps django-prometheus==2.5.0
        touch "$up/.deps"
    fi
    echo "$up/bin/python"
}

run_suite() {
    local rc=0 core
    local -a args=("$@")
    ((${#args[@]})) || args=(-q)
    # Python 3.13's sqlite3 warns about a connection never closed: Django's sqlite connections
    # in thread-locals of finished threads and its in-memory test databases are dropped, not
    # closed (3.12, the main venv's Python, has no such warning).
    args+=(--ds=tests.settings_freethreaded -W "ignore:unclosed database:ResourceWarning"
        -W "ignore:Exception ignored in. <sqlite3.Connection:pytest.PytestUnraisableExceptionWarning")
    [[ " ${args[*]} " == *" -k "* ]] || args+=(-k "$SKIP_TESTS")
    for core in ${FT_CORES:-compiled pure}; do
        log "pytest ${args[*]} ($core core, GIL not forced: PYTHON_GIL unset)"
        if [[ $core == pure ]]; then
            env -u PYTHON_GIL DJANGO_PROMETHEUS_NO_EXTENSIONS=1 "$VENV/bin/python" -m pytest "${args[@]}" || rc=1
        else
            env -u PYTHON_GIL -u DJANGO_PROMETHEUS_NO_EXTENSIONS "$VENV/bin/python" -m pytest "${args[@]}" || rc=1
        fi
    done
    return $rc
}

cmd=${1:-all}
(($#)) && shift
if [[ $cmd == cached ]]; then  # exit 0 if the interpreter is built already (.ci/run asks)
    find_interp
    exit
fi
PY=$(build_interp)
log "interpreter: $PY"
case $cmd in
interp)
    "$PY" -c 'import sys, sysconfig; print(sys.version); print("Py_GIL_DISABLED =", sysconfig.get_config_var("Py_GIL_DISABLED"))'
    ;;
venv) make_venv ;;
test | all)
    make_venv
    run_suite "$@"
    ;;
bench)
    make_venv
    up=$(upstream_venv)
    env -u PYTHON_GIL "$VENV/bin/python" -m benchmarks.bench_threads --upstream-python "$up" "$@"
    ;;
*)
    echo "usage: $0 [all|interp|venv|test [PYTEST ARGS]|bench [N ...]|cached]" >&2
    exit 2
    ;;
esac
