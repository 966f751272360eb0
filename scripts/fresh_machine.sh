#!/usr/bin/env bash
# Prove the README's two commands on a fresh machine: a clean Debian 12 root (debootstrap)
# with what a new machine of this kind has (build tools, git, CA certificates, the shared
# libraries pyenv's Pythons link against; pyenv's interpreters bind-mounted read-only; this
# machine's pip settings), none of the packages scripts/services.sh installs. Inside it:
# clone the repository, `make demo` until /metrics answers, then `make test`.
#
# Usage: scripts/fresh_machine.sh [demo|test|all]    (default: all; needs root)
#   FRESH_DIR   where the roots live (default /var/tmp/dp-fresh): base.tar is the cached
#               debootstrap (about 30 s the first time), root/ the throw-away copy of a run
#   FRESH_REF   what to clone (default: HEAD of this checkout)
# The services inside the root listen on ports of their own, so a run never talks to
# servers of this machine (whose default ports the project's own runs use).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WHAT=${1:-all}
DIR=${FRESH_DIR:-/var/tmp/dp-fresh}
REF=${FRESH_REF:-$(git rev-parse HEAD)}
ROOT=$DIR/root
MIRROR=${FRESH_MIRROR:-http://deb.debian.org/debian}
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
DEMO_PORT=${FRESH_DEMO_PORT:-18000}
# What a new machine has beyond minbase: compilers, git, certificates, and the runtime
# libraries of pyenv's CPython builds (ssl, ffi, sqlite, bz2, lzma, readline, curses, gdbm, uuid).
INCLUDE=build-essential,git,ca-certificates,make,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,\
libreadline8,libncursesw6,libgdbm6,libgdbm-compat4,libuuid1,zlib1g,libexpat1,libnsl2,libtirpc3,procps

log() { printf '\n== fresh-machine: %s\n' "$*"; }
die() { echo "fresh-machine: FAIL: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, mounts)"

MOUNTS=()
cleanup() {
  local m
  [[ -n ${DEMO_PID:-} ]] && kill -- "-$DEMO_PID" 2>/dev/null || true
  # stop what the root started (its services), then unmount in reverse order
  [[ -d $ROOT/work/repo ]] && inside scripts/services.sh stop >/dev/null 2>&1 || true
  for ((m = ${#MOUNTS[@]} - 1; m >= 0; m--)); do umount -l "${MOUNTS[m]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { # src dst [ro]
  mkdir -p "$2"
  mount --rbind "$1" "$2"
  [[ ${3:-} == ro ]] && mount -o remount,bind,ro "$2"
  MOUNTS+=("$2")
}

command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
mkdir -p "$DIR"
if [[ ! -s $DIR/base.tar ]]; then
  log "debootstrap bookworm (cached in $DIR/base.tar)"
  rm -rf "$DIR/base"
  debootstrap --variant=minbase --include="$INCLUDE" bookworm "$DIR/base" "$MIRROR" >"$DIR/debootstrap.log" 2>&1 ||
    { tail -30 "$DIR/debootstrap.log"; die "debootstrap"; }
  tar -C "$DIR/base" -cf "$DIR/base.tar" . && rm -rf "$DIR/base"
fi

log "a clean root in $ROOT"
# Never rm -rf through a mount a killed run left behind (/dev, /proc, the repo...).
if grep -q " $ROOT/" /proc/mounts; then die "something is still mounted under $ROOT: umount it first"; fi
rm -rf "$ROOT" && mkdir -p "$ROOT" && tar -C "$ROOT" -xf "$DIR/base.tar"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/apt/sources.list "$ROOT/etc/apt/sources.list" 2>/dev/null || true
cp -r /etc/apt/sources.list.d/. "$ROOT/etc/apt/sources.list.d/" 2>/dev/null || true
# This machine's pip settings (a new machine has the same): config files, PIP_* variables, and
# the CA bundle they point at (it holds this workplace's registry proxy's certificate).
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
if [[ -d /usr/local/share/ca-certificates ]]; then
  cp -r /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
fi
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
[[ -d /etc/xdg/pip ]] && mkdir -p "$ROOT/etc/xdg" && cp -r /etc/xdg/pip "$ROOT/etc/xdg/pip"
PIPENV=$(env | grep '^PIP_' | sed 's/^/export /;s/=\(.*\)$/="\1"/' || true)
bind /proc "$ROOT/proc"
bind /sys "$ROOT/sys"
bind /dev "$ROOT/dev"
bind "$PYENV_ROOT" "$ROOT/root/.pyenv" ro
[[ -d /opt ]] && bind /opt "$ROOT/opt" ro  # the machine image's local package files (pip's find-links)
bind "$REPO" "$ROOT/src" ro

# A command in /work/repo of the root, with the environment a new machine's root user has.
# setsid: the command (a demo server and its children) is a session of its own, killed as one.
inside() {
  ${INSIDE_EXEC:-} setsid chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI="${CI:-}" \
    PATH=/root/.pyenv/shims:/root/.pyenv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYENV_ROOT=/root/.pyenv DP_REDIS_PORT=26379 DP_MEMCACHED_PORT=31211 DP_PG_PORT=25432 DP_MYSQL_PORT=23306 \
    DP_SERVICES_DIR=/tmp/dp-services DEMO_PORT="$DEMO_PORT" \
    /bin/bash -c "$PIPENV
cd /work/repo && eval \"\$(scripts/services.sh env)\" && $*"
}

log "clone $REF"
chroot "$ROOT" /bin/bash -c "git config --global --add safe.directory '*' && git clone -q /src /work/repo && cd /work/repo && git checkout -q $REF"
for p in redis-server memcached mariadb-server postgresql-15 libmariadb-dev pkg-config; do
  chroot "$ROOT" dpkg -s "$p" >/dev/null 2>&1 && die "the fresh root already has $p"
done

result_demo=skipped result_test=skipped
if [[ $WHAT == demo || $WHAT == all ]]; then
  log "make demo (until http://127.0.0.1:$DEMO_PORT/metrics answers)"
  # (INSIDE_EXEC=exec: the background job becomes setsid itself, so its pid is the session to kill)
  (INSIDE_EXEC=exec inside make demo) >"$DIR/demo.log" 2>&1 &
  DEMO_PID=$!
  result_demo=FAIL
  for ((i = 0; i < 600; i++)); do
    if ! kill -0 "$DEMO_PID" 2>/dev/null; then tail -40 "$DIR/demo.log"; die "make demo exited"; fi
    if python3 -c "import urllib.request,sys; r=urllib.request.urlopen('http://127.0.0.1:$DEMO_PORT/metrics', timeout=2); sys.exit(0 if b'django_http_requests_before_middlewares_total' in r.read() else 1)" 2>/dev/null; then
      result_demo="passed (/metrics answered after ${i}s)"
      break
    fi
    sleep 1
  done
  kill -- "-$DEMO_PID" 2>/dev/null || true
  wait "$DEMO_PID" 2>/dev/null || true
  DEMO_PID=
  [[ $result_demo == passed* ]] || { tail -40 "$DIR/demo.log"; die "make demo: /metrics never answered"; }
  echo "make demo: $result_demo"
fi

if [[ $WHAT == test || $WHAT == all ]]; then
  log "make test (log: $DIR/test.log)"
  start=$SECONDS
  if inside bash .ci/run </dev/null >"$DIR/test.log" 2>&1; then
    result_test="passed in $((SECONDS - start)) s: $(tail -1 "$DIR/test.log")"
  else
    tail -60 "$DIR/test.log"
    die "make test failed after $((SECONDS - start)) s (log: $DIR/test.log)"
  fi
fi

log "summary ($REF, $(date -u +%FT%TZ))"
echo "make demo: $result_demo"
echo "make test: $result_test"
