#!/bin/bash
# Run by the mysql image on the first start (docker-entrypoint-initdb.d, after the DDL), as root
# on the socket of the image's init-time server. The image has created MYSQL_USER with ALL on
# MYSQL_DATABASE; the pipelines also need these global privileges:
#   PROCESS             the batch window stays below the oldest open transaction (INNODB_TRX)
#   REPLICATION SLAVE   the binlog CDC streams the binlog
#   REPLICATION CLIENT  the binlog CDC reads SHOW BINARY LOG STATUS / SHOW BINARY LOGS
#   RELOAD              the binlog CDC's first snapshot on MySQL (a brief FLUSH TABLES WITH
#                       READ LOCK)
# The image may source this file instead of executing it, so: no `set -u`/`exit` on success,
# nothing left defined but one function.

etl_grants() {
    local user=${MYSQL_USER:?MYSQL_USER is not set}
    # A MySQL string literal: backslashes and quotes escaped.
    user=${user//\\/\\\\}
    user=${user//\'/\\\'}
    MYSQL_PWD=${MYSQL_ROOT_PASSWORD:?MYSQL_ROOT_PASSWORD is not set} \
        mysql --protocol=socket -uroot <<SQL
GRANT PROCESS, RELOAD, REPLICATION CLIENT, REPLICATION SLAVE ON *.* TO '${user}'@'%';
SQL
}

if etl_grants; then
    echo "20-etl-grants.sh: granted PROCESS, RELOAD, REPLICATION CLIENT/SLAVE to ${MYSQL_USER}"
else
    echo "20-etl-grants.sh: GRANT failed" >&2
    exit 1
fi
