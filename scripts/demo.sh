#!/usr/bin/env bash
# The main job end to end on the local default stack: a fresh MariaDB source with the seed,
# a full load into the embedded chDB warehouse, the incremental batch, an incremental load,
# and both business queries; then MongoDB's demo documents into the same star schema, and the
# user query across both sources.
set -euo pipefail
cd "$(dirname "$0")/.."
export CLICKHOUSE_URL=${DEMO_CLICKHOUSE_URL:-chdb://.local/chdb}
ETL=.venv/bin/ewallet-etl  # what `pip install .` gives; python etl_pipeline.py is the same

scripts/setup.sh
scripts/stack.sh up mariadb
scripts/stack.sh reset-source          # the seed: TX1001, TX1003, TX1004 (FAILED), TX1008
rm -rf .local/chdb

echo "== full load =="
$ETL run --full-refresh
echo "== incremental batch: 3 new transactions =="
scripts/stack.sh mysql < seed/incremental_batch.sql
echo "== incremental load =="
$ETL run
echo "== Querying_Total_Transaction_User.sql =="
$ETL sql -f Querying_Total_Transaction_User.sql
echo "== Querying_Total_Transaction_Merchant.sql =="
$ETL sql -f Querying_Total_Transaction_Merchant.sql
echo "== a second source: MongoDB wallet documents (MG2001-MG2003) =="
scripts/stack.sh up mongodb
.venv/bin/python seed/mongodb_seed.py --reset
$ETL run --source mongodb --full-refresh
echo "== Querying_Total_Transaction_User.sql, both sources =="
$ETL sql -f Querying_Total_Transaction_User.sql
