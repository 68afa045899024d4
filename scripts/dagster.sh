#!/usr/bin/env bash
# Dagster on the local stack, one command: .venv (with Dagster), the servers, then `dagster dev`
# on http://127.0.0.1:${DAGSTER_PORT:-3000} with its storage under .local/dagster. The code
# location is found from pyproject.toml ([tool.dagster]); the runs read the same settings as
# the CLI (environment, .env). The instance's settings are ewallet_etl/orchestration/dagster.yaml
# (a run queue, one run at a time on the warehouse, no telemetry): copied into DAGSTER_HOME,
# unless a DAGSTER_HOME of your own already has a dagster.yaml. The schedule and the binlog
# sensor start running: do not also run `ewallet-etl cdc binlog --follow` (or compose's `cdc`
# profile) on the same source and warehouse. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/stack.sh up
own_home=${DAGSTER_HOME:+yes}
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.local/dagster}
# the demo's warehouse (scripts/demo.sh), unless one is set: not the per-user default
export CLICKHOUSE_URL=${CLICKHOUSE_URL:-chdb://$PWD/.local/chdb}
mkdir -p "$DAGSTER_HOME"
if [[ -z $own_home || ! -e $DAGSTER_HOME/dagster.yaml ]]; then
    cp ewallet_etl/orchestration/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
else
    echo "[dagster] keeping $DAGSTER_HOME/dagster.yaml (yours)" >&2
fi
exec .venv/bin/dagster dev -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
