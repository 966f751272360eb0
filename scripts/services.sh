#!/usr/bin/env bash
# Test services for `make test`: Redis, memcached, PostgreSQL 15 + PostGIS,
# MariaDB. All bound to 127.0.0.1, all state under $DP_SERVICES_DIR.
# Usage: scripts/services.sh install|start|stop|status|env
set -euo pipefail

DIR=${DP_SERVICES_DIR:-/tmp/dp-services}
REDIS_PORT=${DP_REDIS_PORT:-16379}
MC_PORT=${DP_MEMCACHED_PORT:-21211}
PG_PORT=${DP_PG_PORT:-15432}
MY_PORT=${DP_MYSQL_PORT:-13306}
TIMEOUT=${DP_SERVICES_TIMEOUT:-60}
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=$DIR/pg/data            # $DIR/pg is owned by postgres (data, log, socket)
MYDATA=$DIR/mysql/data
MYSOCK=$DIR/mysql/mysql.sock
PACKAGES=(redis-server memcached postgresql-15 postgresql-15-postgis-3
  mariadb-server mariadb-client libmariadb-dev pkg-config libmemcached-dev
  zlib1g-dev libsqlite3-mod-spatialite gdal-bin libgdal-dev prometheus prometheus-pushgateway valgrind
  python3-venv python3-dev  # Debian's Python: the one here that can load SpatiaLite
  haproxy nginx-light  # reverse proxies in front of the /metrics view (tests/test_exports_proxies.py)
  # The protobuf exposition's reference decoders: protoc (+ well-known types) and client_golang
  protobuf-compiler libprotobuf-dev golang-go golang-github-prometheus-client-golang-dev
  golang-github-prometheus-common-dev
  chromium chromium-driver)  # a real browser reads Server-Timing back (tests/test_server_timing_servers.py)

log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }
my() { mariadb --no-defaults --protocol=socket -S "$MYSOCK" -uroot "$@"; }
pgsu() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/pg" -p "$PG_PORT" -U postgres "$@"; }

# --- health checks (exit 0 when the service answers on its port) ---------
redis_up() { [[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
mc_up() {
  timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && printf "stats\r\nquit\r\n" >&3 &&
    grep -q "^STAT pid" <&3' "$MC_PORT" 2>/dev/null
}
pg_up() { "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 3 >/dev/null 2>&1; }
# MariaDB sends a greeting (or an error packet) as soon as a client connects
my_up() {
  [[ $(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && head -c 4 <&3' "$MY_PORT" 2>/dev/null |
    wc -c) == 4 ]]
}

wait_for() { # name check-fn logfile
  local i
  for ((i = 0; i < TIMEOUT * 2; i++)); do "$2" && { log "$1 is up"; return 0; }; sleep 0.5; done
  echo "services: ERROR: $1 did not answer within ${TIMEOUT}s (port taken by something else?)" >&2
  if [[ -s $3 ]]; then echo "--- last lines of $3:" >&2; tail -n 30 "$3" >&2; else echo "  ($3 is empty)" >&2; fi
  exit 1
}

# --- install ---------------------------------------------------------------
do_install() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then log "all packages already installed"; return; fi
  [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # keep package postinst scripts from starting system-wide daemons on default ports
  local prc=/usr/sbin/policy-rc.d
  if [[ ! -e $prc ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$prc" && chmod +x "$prc"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# --- start -----------------------------------------------------------------
start_redis() {
  if redis_up; then log "redis already answers on $REDIS_PORT"; return; fi
  mkdir -p "$DIR/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$DIR/redis" \
    --save '' --appendonly no --logfile "$DIR/redis/redis.log" \
    --pidfile "$DIR/redis/redis.pid" >/dev/null
  wait_for redis redis_up "$DIR/redis/redis.log"
}

start_memcached() {
  if mc_up; then log "memcached already answers on $MC_PORT"; return; fi
  mkdir -p "$DIR/memcached"
  # run in the foreground of a detached session (not -d) so bind errors reach the log
  setsid nohup memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -u root -m 64 \
    </dev/null >>"$DIR/memcached/memcached.log" 2>&1 &
  echo $! >"$DIR/memcached/memcached.pid"
  wait_for memcached mc_up "$DIR/memcached/memcached.log"
}

start_pg() {
  if pg_up; then
    log "postgresql already answers on $PG_PORT"
  else
    mkdir -p "$DIR/pg"
    chown postgres:postgres "$DIR/pg" && chmod 700 "$DIR/pg"
    runuser -u postgres -- test -w "$DIR/pg" || die "postgres user cannot reach $DIR/pg (parent dirs not traversable?)"
    if [[ ! -s $PGDATA/PG_VERSION ]]; then
      log "initdb $PGDATA"
      runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$DIR/pg/initdb.log" 2>&1 ||
        { tail -n 30 "$DIR/pg/initdb.log" >&2; die "initdb failed"; }
    fi
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$DIR/pg/postgresql.log" -s \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories='$DIR/pg' -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start || true
    wait_for postgresql pg_up "$DIR/pg/postgresql.log"
  fi
  [[ -S $DIR/pg/.s.PGSQL.$PG_PORT ]] || { log "postgresql on $PG_PORT is not ours; skipping role setup"; return; }
  pgsu -d postgres <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dp') THEN CREATE ROLE dp; END IF;
END $$;
ALTER ROLE dp WITH LOGIN SUPERUSER PASSWORD 'dp';
SQL
  if [[ -z $(pgsu -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'dp'") ]]; then
    pgsu -d postgres -c "CREATE DATABASE dp OWNER dp"
  fi
  PGOPTIONS="-c client_min_messages=warning" PGPASSWORD=dp "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U dp -d dp \
    -c "CREATE EXTENSION IF NOT EXISTS postgis" || die "CREATE EXTENSION postgis failed in database dp"
}

start_mysql() {
  if my_up; then
    log "mariadb already answers on $MY_PORT"
  else
    mkdir -p "$DIR/mysql"
    if [[ ! -d $MYDATA/mysql ]]; then
      log "mariadb-install-db $MYDATA"
      rm -rf "$MYDATA"
      mariadb-install-db --no-defaults --user=root --datadir="$MYDATA" --skip-test-db \
        --auth-root-authentication-method=socket >"$DIR/mysql/install-db.log" 2>&1 ||
        { tail -n 30 "$DIR/mysql/install-db.log" >&2; die "mariadb-install-db failed"; }
    fi
    setsid nohup mariadbd --no-defaults --user=root --datadir="$MYDATA" --bind-address=127.0.0.1 \
      --port="$MY_PORT" --socket="$MYSOCK" --pid-file="$DIR/mysql/mysqld.pid" \
      --log-error="$DIR/mysql/mysqld.log" --skip-name-resolve \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 \
      </dev/null >>"$DIR/mysql/mysqld.out" 2>&1 &
    wait_for mariadb my_up "$DIR/mysql/mysqld.log"
  fi
  [[ -S $MYSOCK ]] || { log "mariadb on $MY_PORT is not ours; skipping user setup"; return; }
  my <<'SQL'
CREATE USER IF NOT EXISTS 'dp'@'127.0.0.1' IDENTIFIED BY 'dp';
CREATE USER IF NOT EXISTS 'dp'@'localhost' IDENTIFIED BY 'dp';
GRANT ALL PRIVILEGES ON *.* TO 'dp'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'dp'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS dp CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
SQL
  mariadb-admin --no-defaults --protocol=tcp -h 127.0.0.1 -P "$MY_PORT" -udp -pdp ping >/dev/null ||
    die "mariadb: user dp cannot connect over TCP"
}

# --- stop ------------------------------------------------------------------
wait_down() { # name check-fn
  local i
  for ((i = 0; i < 60; i++)); do "$2" || { log "$1 stopped"; return 0; }; sleep 0.5; done
  log "WARNING: $1 still answers after 30s"
}
do_stop() {
  if redis_up; then redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    wait_down redis redis_up; else log "redis not running"; fi
  if [[ -s $DIR/memcached/memcached.pid ]] && kill "$(cat "$DIR/memcached/memcached.pid")" 2>/dev/null; then
    rm -f "$DIR/memcached/memcached.pid"; wait_down memcached mc_up; else log "memcached not running (no pid)"; fi
  if [[ -f $PGDATA/postmaster.pid ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -s stop || true
    wait_down postgresql pg_up; else log "postgresql not running"; fi
  if [[ -S $MYSOCK ]] && my_up; then mariadb-admin --no-defaults -S "$MYSOCK" -uroot shutdown || true
    wait_down mariadb my_up; else log "mariadb not running"; fi
}

do_status() {
  local s fn
  for s in "redis:redis_up:$REDIS_PORT" "memcached:mc_up:$MC_PORT" \
    "postgresql:pg_up:$PG_PORT" "mariadb:my_up:$MY_PORT"; do
    IFS=: read -r name fn port <<<"$s"
    if "$fn"; then echo "$name 127.0.0.1:$port up"; else echo "$name 127.0.0.1:$port down"; fi
  done
}

do_env() {
  cat <<EOF
export DP_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export DP_MEMCACHED_LOCATION=127.0.0.1:$MC_PORT
export DP_PG_HOST=127.0.0.1 DP_PG_PORT=$PG_PORT DP_PG_USER=dp DP_PG_PASSWORD=dp DP_PG_NAME=dp
export DP_MYSQL_HOST=127.0.0.1 DP_MYSQL_PORT=$MY_PORT DP_MYSQL_USER=dp DP_MYSQL_PASSWORD=dp DP_MYSQL_NAME=dp
EOF
}

case ${1:-} in
  install) do_install ;;
  start) mkdir -p "$DIR" && chmod 755 "$DIR"
    start_redis; start_memcached; start_pg; start_mysql; do_status ;;
  stop) do_stop ;;
  status) do_status ;;
  env) do_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
