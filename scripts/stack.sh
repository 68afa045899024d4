#!/usr/bin/env bash
# The local stack: a throw-away MariaDB 10.11 and ClickHouse 18.16 server from Debian's packages,
# and a MongoDB wire-protocol server (SecantusDB, from .venv: scripts/setup.sh installs it), on
# 127.0.0.1 and non-default ports, with data folders under $STACK_DIR.
#
#   scripts/stack.sh up [mariadb|clickhouse|mongodb|all]   install if missing, start, wait,
#                                                           apply the DDLs
#   scripts/stack.sh down                          stop them and delete the data folders
#   scripts/stack.sh status                        say what is running
#   scripts/stack.sh reset-source                  drop and re-create the source database (seed)
#   scripts/stack.sh mysql [ARGS]                  the mariadb client on the source database
#
# Re-running `up` is safe: running servers are left alone, the DDLs are idempotent.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR=${STACK_DIR:-/tmp/ewallet-stack}
MYSQL_PORT=${MYSQL_PORT:-13306}
MYSQL_USER=${MYSQL_USER:-etl}
MYSQL_PASSWORD=${MYSQL_PASSWORD:-etl_password}
MYSQL_DATABASE=${MYSQL_DATABASE:-ewallet_source}
CH_TCP_PORT=${CH_TCP_PORT:-19000}
CH_HTTP_PORT=${CH_HTTP_PORT:-18123}
CH_USER=${CH_USER:-etl}
CH_PASSWORD=${CH_PASSWORD:-etl_password}
MONGO_PORT=${MONGO_PORT:-37017}

MY_DIR=$STACK_DIR/mariadb
CH_DIR=$STACK_DIR/clickhouse
MY_SOCK=$MY_DIR/mysqld.sock
MG_DIR=$STACK_DIR/mongodb

log() { printf '[stack] %s\n' "$*" >&2; }

ensure_packages() {
  local missing=()
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
  command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
  # tests/test_compose.py validates docker-compose.yml with Debian's docker-compose (no engine needed)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  # tests/integration/test_dagster.py looks at the Dagster UI as a person would, in a browser
  command -v chromium >/dev/null || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's packages try to start their own service on install; policy-rc.d stops that here.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not become ready in ${limit}s"; return 1
}

my_root() { mariadb --no-defaults -uroot --socket="$MY_SOCK" "$@"; }

mariadb_up() {
  if [ -S "$MY_SOCK" ] && my_root -e 'SELECT 1' >/dev/null 2>&1; then
    log "MariaDB already running on 127.0.0.1:$MYSQL_PORT"
  else
    mkdir -p "$MY_DIR"
    if [ ! -d "$MY_DIR/data/mysql" ]; then
      mariadb-install-db --no-defaults --user=root --datadir="$MY_DIR/data" \
        --auth-root-authentication-method=socket >"$MY_DIR/install.log" 2>&1
    fi
    # Binlog settings are what the binlog CDC needs (ROW, FULL image and metadata);
    # the server clock is UTC so that CURRENT_TIMESTAMP columns are UTC for every writer.
    nohup mariadbd --no-defaults --user=root --datadir="$MY_DIR/data" \
      --socket="$MY_SOCK" --pid-file="$MY_DIR/mysqld.pid" \
      --bind-address=127.0.0.1 --port="$MYSQL_PORT" \
      --log-bin="$MY_DIR/data/binlog" --server-id=1 --binlog-format=ROW \
      --binlog-row-image=FULL --binlog-row-metadata=FULL \
      --default-time-zone=+00:00 --character-set-server=utf8mb4 \
      --collation-server=utf8mb4_unicode_ci --innodb-buffer-pool-size=4G \
      --max-allowed-packet=256M --log-error="$MY_DIR/error.log" >/dev/null 2>&1 &
    wait_for 60 "MariaDB" my_root -e 'SELECT 1'
    log "MariaDB started on 127.0.0.1:$MYSQL_PORT (data in $MY_DIR)"
  fi
  my_root <<SQL
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_USER'@'localhost' WITH GRANT OPTION;
SQL
  if [ "$(my_root -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$MYSQL_DATABASE' AND table_name='transactions'")" = 0 ]; then
    my_root "$MYSQL_DATABASE" <"$ROOT/DDL-MySQL-Source.sql"
    log "applied DDL-MySQL-Source.sql to $MYSQL_DATABASE"
  fi
}

clickhouse_config() {
  mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/log"
  cat >"$CH_DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$CH_DIR/log/server.log</log><errorlog>$CH_DIR/log/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$CH_TCP_PORT</tcp_port>
  <http_port>$CH_HTTP_PORT</http_port>
  <path>$CH_DIR/data/</path>
  <tmp_path>$CH_DIR/tmp/</tmp_path>
  <user_files_path>$CH_DIR/user_files/</user_files_path>
  <users_config>$CH_DIR/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
XML
  cat >"$CH_DIR/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <$CH_USER><password>$CH_PASSWORD</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></$CH_USER>
  </users>
  <quotas><default></default></quotas>
</yandex>
XML
}

ch_client() { clickhouse-client --host 127.0.0.1 --port "$CH_TCP_PORT" --user "$CH_USER" --password "$CH_PASSWORD" "$@"; }

clickhouse_up() {
  if ch_client -q 'SELECT 1' >/dev/null 2>&1; then
    log "ClickHouse already running on 127.0.0.1:$CH_TCP_PORT"
  else
    clickhouse_config
    rm -f "$CH_DIR/server.pid"  # stale after a kill: 18.16 refuses to start over it otherwise
    nohup clickhouse-server --config-file="$CH_DIR/config.xml" --pid-file="$CH_DIR/server.pid" \
      >"$CH_DIR/log/stdout.log" 2>&1 &
    wait_for 60 "ClickHouse" ch_client -q 'SELECT 1'
    log "ClickHouse $(ch_client -q 'SELECT version()') started on 127.0.0.1:$CH_TCP_PORT (data in $CH_DIR)"
  fi
  ch_client --multiquery <"$ROOT/DDL-Clickhouse.sql"
  log "applied DDL-Clickhouse.sql"
}

mongo_ping() {
  "$ROOT/.venv/bin/python" -c "import sys, pymongo; pymongo.MongoClient(
    'mongodb://127.0.0.1:$MONGO_PORT/?replicaSet=secantus', serverSelectionTimeoutMS=1000
    ).admin.command('ping')" >/dev/null 2>&1
}

mongodb_up() {
  if mongo_ping; then
    log "MongoDB (SecantusDB) already running on 127.0.0.1:$MONGO_PORT"
    return 0
  fi
  if [ ! -x "$ROOT/.venv/bin/secantusd-py" ]; then
    log "SecantusDB is not installed: run scripts/setup.sh first"
    return 1
  fi
  mkdir -p "$MG_DIR/data"
  # A long change-stream history: the tests stop and resume streams (the default keeps 1 h).
  nohup "$ROOT/.venv/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" \
    --storage-path "$MG_DIR/data" --log-level WARNING \
    --oplog-retention-seconds 604800 --oplog-max-entries 5000000 \
    >"$MG_DIR/stdout.log" 2>&1 &
  echo $! >"$MG_DIR/server.pid"
  wait_for 60 "MongoDB (SecantusDB)" mongo_ping
  log "MongoDB (SecantusDB, replica set secantus) started on 127.0.0.1:$MONGO_PORT (data in $MG_DIR)"
}

stop_server() {  # stop_server PIDFILE PATTERN NAME: by pid file, then by command line
  local pids=""
  [ -f "$1" ] && pids=$(cat "$1")
  # A pid file can be stale (the server was killed); the command line names our data folder.
  pids="$pids $(pgrep -f "$2" || true)"
  local stopped=""
  for pid in $pids; do
    if kill "$pid" 2>/dev/null; then stopped=1; fi
  done
  for _ in $(seq 1 150); do
    pgrep -f "$2" >/dev/null || break
    sleep 0.2
  done
  pkill -9 -f "$2" 2>/dev/null || true
  rm -f "$1"
  [ -n "$stopped" ] && log "stopped $3"
  return 0
}

down() {
  stop_server "$MY_DIR/mysqld.pid" "mariadbd .*--datadir=$MY_DIR/data" MariaDB
  stop_server "$CH_DIR/server.pid" "clickhouse-server --config-file=$CH_DIR/config.xml" ClickHouse
  stop_server "$MG_DIR/server.pid" "secantusd-py .*--storage-path $MG_DIR/data" MongoDB
  rm -rf "$STACK_DIR"
  log "removed $STACK_DIR"
}

status() {
  if [ -S "$MY_SOCK" ] && my_root -e 'SELECT 1' >/dev/null 2>&1; then
    log "MariaDB: up on 127.0.0.1:$MYSQL_PORT"; else log "MariaDB: down"; fi
  if ch_client -q 'SELECT 1' >/dev/null 2>&1; then
    log "ClickHouse: up on 127.0.0.1:$CH_TCP_PORT"; else log "ClickHouse: down"; fi
  if mongo_ping; then
    log "MongoDB: up on 127.0.0.1:$MONGO_PORT"; else log "MongoDB: down"; fi
}

case "${1:-}" in
  up)
    ensure_packages
    case "${2:-all}" in
      mariadb) mariadb_up ;;
      clickhouse) clickhouse_up ;;
      mongodb) mongodb_up ;;
      all) mariadb_up; clickhouse_up; mongodb_up ;;
      *) echo "usage: $0 up [mariadb|clickhouse|mongodb|all]" >&2; exit 2 ;;
    esac ;;
  down) down ;;
  reset-source)
    my_root -e "DROP DATABASE IF EXISTS \`$MYSQL_DATABASE\`"
    mariadb_up ;;
  mysql) shift; my_root "$MYSQL_DATABASE" "$@" ;;
  status) status ;;
  *) echo "usage: $0 up [mariadb|clickhouse|mongodb|all] | down | status | reset-source | mysql" >&2; exit 2 ;;
esac
