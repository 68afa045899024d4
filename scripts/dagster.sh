#!/usr/bin/env bash
# Dagster on the local stack, one command: .venv (with Dagster), the servers, then `dagster dev`
# on http://127.0.0.1:${DAGSTER_PORT:-3000} with its storage under .local/dagster. The code
# location is found from pyproject.toml ([tool.dagster]); the runs read the same settings as
# the CLI (environment, .env). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/stack.sh up
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.local/dagster}
mkdir -p "$DAGSTER_HOME"
exec .venv/bin/dagster dev -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
