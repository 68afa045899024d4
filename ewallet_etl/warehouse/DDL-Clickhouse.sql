-- Warehouse (OLAP) star schema. Re-runnable (IF NOT EXISTS); valid on ClickHouse 18.16, chDB 26.x
-- and current ClickHouse servers:
--   clickhouse-client --multiquery < DDL-Clickhouse.sql
--
-- Every table is a ReplacingMergeTree versioned by `_version` (the source's change time in
-- microseconds), so loading a row again replaces it. ReplacingMergeTree only collapses versions
-- when parts merge, at a time nobody controls: read the `v_*` views (or FINAL / argMax), never the
-- raw tables, for numbers. `_deleted` = 1 marks a row that left the source; views hide it.
-- A ReplacingMergeTree collapses the versions of a row only if they share the sort key and the
-- partition, so every key and partition expression here is made of columns that never change in
-- the source (the ids): a transaction whose transaction_time moves to another day replaces its
-- old row instead of leaving it behind on the old day.

CREATE DATABASE IF NOT EXISTS analytics_dw;

CREATE TABLE IF NOT EXISTS analytics_dw.dim_users (
    user_key   UInt64,
    user_id    UInt64,
    name       String,
    email      String,
    city       String,
    updated_at DateTime('UTC'),
    _version   UInt64,
    _deleted   UInt8
) ENGINE = ReplacingMergeTree(_version)
ORDER BY user_key;

CREATE TABLE IF NOT EXISTS analytics_dw.dim_merchants (
    merchant_key UInt64,
    merchant_id  UInt64,
    name         String,
    category     String,
    city         String,
    updated_at   DateTime('UTC'),
    _version     UInt64,
    _deleted     UInt8
) ENGINE = ReplacingMergeTree(_version)
ORDER BY merchant_key;

-- One row per source transaction, whatever its status: a sale is a row with status 'SUCCESS'.
-- A transaction that turns FAILED or REFUNDED after it was loaded keeps its row with the new
-- status, so it leaves the sales instead of lingering with the old one. Keyed by transaction_id
-- alone, with no partition: transaction_time (and so transaction_date) may be corrected in the
-- source, and the corrected version must replace the old one, which a key or partition on the
-- date would keep apart. A version the pipeline refused is written as a tombstone (_deleted = 1)
-- with that version, so an older good version never stays counted.
CREATE TABLE IF NOT EXISTS analytics_dw.fact_sales (
    transaction_id   String,
    user_key         UInt64,
    merchant_key     UInt64,
    amount           Decimal(18, 2),
    amount_category  String,
    status           String,
    transaction_time DateTime('UTC'),
    transaction_date Date,
    updated_at       DateTime('UTC'),
    _version         UInt64,
    _deleted         UInt8,
    source           String DEFAULT 'mysql', -- where the fact came from: mysql or mongodb
    -- the source's clock (microseconds) at the start of the batch run that wrote the row (0
    -- when a stream wrote it): a --full-refresh checks only the facts it did not rewrite
    _loaded_us       UInt64 DEFAULT 0
) ENGINE = ReplacingMergeTree(_version)
ORDER BY transaction_id;

-- Current state, deleted rows hidden: what analysts (and the two query files) read.
-- FINAL collapses versions at read time, so the answer is right before any merge. The
-- `_deleted` filter sits outside the FINAL subquery: on 18.16 a filter next to FINAL can be
-- evaluated (as PREWHERE) before the versions collapse.
CREATE VIEW IF NOT EXISTS analytics_dw.v_dim_users AS
SELECT user_key, user_id, name, email, city, updated_at
FROM (SELECT * FROM analytics_dw.dim_users FINAL)
WHERE _deleted = 0;

CREATE VIEW IF NOT EXISTS analytics_dw.v_dim_merchants AS
SELECT merchant_key, merchant_id, name, category, city, updated_at
FROM (SELECT * FROM analytics_dw.dim_merchants FINAL)
WHERE _deleted = 0;

CREATE VIEW IF NOT EXISTS analytics_dw.v_fact_sales AS
SELECT transaction_id, user_key, merchant_key, amount, amount_category, status,
       transaction_time, transaction_date, updated_at
FROM (SELECT * FROM analytics_dw.fact_sales FINAL)
WHERE _deleted = 0;

-- Rows the pipelines refused, with the reason and the raw row as JSON. Keyed by the record and
-- its version, so re-reading the same bad row (overlap windows, replays) does not pile up.
CREATE TABLE IF NOT EXISTS analytics_dw.etl_quarantine (
    source      String,
    record_key  String,
    _version    UInt64,
    reason      String,
    raw         String,
    run_id      String,
    rejected_at DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY (source, record_key, _version);

-- One row per pipeline run: the audit trail.
CREATE TABLE IF NOT EXISTS analytics_dw.etl_runs (
    run_id        String,
    pipeline      String,
    mode          String,
    started_at    DateTime('UTC'),
    finished_at   DateTime('UTC'),
    window_from   String,
    window_to     String,
    rows_read     UInt64,
    rows_loaded   UInt64,
    rows_rejected UInt64,
    status        String,
    error         String,
    seconds       Float64,
    started_us    UInt64 DEFAULT toUInt64(toUnixTimestamp(started_at)) * 1000000  -- run order
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(started_at)
ORDER BY (pipeline, started_at, run_id);

-- One row per run as it starts (its etl_runs row is written as it ends). A start with no
-- etl_runs row is a run in progress, or one that died without closing (SIGKILL, out of memory,
-- the host stopped): the next run of the same pipeline that can tell which closes it as `killed`.
CREATE TABLE IF NOT EXISTS analytics_dw.etl_run_starts (
    run_id     String,
    pipeline   String,
    mode       String,
    started_at DateTime('UTC'),
    host       String,
    pid        UInt32
) ENGINE = MergeTree()
ORDER BY (pipeline, started_at, run_id);

-- MongoDB documents -> their transaction: a change stream's delete names only the document's
-- _id; this maps it to the fact to tombstone, at the last version loaded.
CREATE TABLE IF NOT EXISTS analytics_dw.mongo_keys (
    doc_id         String,
    transaction_id String,
    _version       UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY doc_id;

-- Where every pipeline stands (ewallet_etl/state/store.py): one row per save, a kind (batch,
-- binlog, replay; handoff for a switch between them) and a JSON cursor, appended right after
-- the data it covers landed. A pipeline's state is its save with the highest _version.
CREATE TABLE IF NOT EXISTS analytics_dw.etl_state (
    pipeline    String,
    kind        String,
    source      String,
    cursor      String,
    run_id      String,
    saved_at_us UInt64,
    _version    UInt64
) ENGINE = MergeTree()
ORDER BY (pipeline, _version);

-- Before etl_state (still read, no longer written). Where each batch pipeline's data stands in
-- THIS warehouse: the watermark of the last window
-- that landed here (microseconds since the epoch, UTC), saved after the window's rows and before
-- the source's checkpoint. A run starts from the lower of the two, so a fresh warehouse, a second
-- one or one restored from an older backup gets what it lacks (the source's checkpoint alone
-- cannot know which warehouse it describes). Read with max(watermark_us).
CREATE TABLE IF NOT EXISTS analytics_dw.etl_watermarks (
    pipeline     String,
    source       String,
    watermark_us UInt64,
    saved_at     DateTime('UTC'),
    run_id       String
) ENGINE = ReplacingMergeTree(watermark_us)
ORDER BY (pipeline, source);

-- CDC (cdc-stream.py): the latest state of each source transaction, from change events.
-- _version is the event's version (microseconds since the epoch for the JSON files, or a binlog
-- position): the highest wins whatever the arrival order, and a replayed event is absorbed.
-- A delete is a row with _deleted = 1 and a higher _version (18.16 has no `is_deleted` engine
-- argument), so older versions arriving later cannot bring the row back. No partition key:
-- transaction_time can change between versions, and versions of one key in two partitions are
-- never merged together.
CREATE TABLE IF NOT EXISTS analytics_dw.cdc_transactions (
    transaction_id   String,
    user_id          UInt64,
    merchant_id      UInt64,
    amount           Decimal(18, 2),
    amount_category  String,
    status           String,
    transaction_time DateTime('UTC'),
    _version         UInt64,
    _deleted         UInt8
) ENGINE = ReplacingMergeTree(_version)
ORDER BY transaction_id;

-- Current transactions, deleted ones hidden. The _deleted filter sits outside the FINAL
-- subquery: on 18.16 a WHERE next to FINAL may be moved to PREWHERE and run before the
-- versions collapse, which can resurrect an older version of a deleted row.
CREATE VIEW IF NOT EXISTS analytics_dw.v_cdc_transactions AS
SELECT transaction_id, user_id, merchant_id, amount, amount_category, status,
       transaction_time, _version
FROM (SELECT * FROM analytics_dw.cdc_transactions FINAL)
WHERE _deleted = 0;

-- Binlog CDC (cdc-stream.py --source binlog; docs/binlog-cdc.md): replicas of the source's
-- users and merchants, next to cdc_transactions. _version is the binlog position of the change
-- (ewallet_etl/binlog_state.py), so these tables are fed by the binlog reader only. DATETIME(6)
-- columns are kept exactly, as microseconds since the epoch (18.16 has no DateTime64); the
-- views also show them as DateTime. Text columns are Nullable: a NULL in the source (after an
-- ALTER ... NULL) arrives as NULL, not as ''.
CREATE TABLE IF NOT EXISTS analytics_dw.cdc_users (
    user_id       UInt64,
    name          Nullable(String),
    email         Nullable(String),
    city          Nullable(String),
    created_at_us UInt64,
    updated_at_us UInt64,
    _version      UInt64,
    _deleted      UInt8
) ENGINE = ReplacingMergeTree(_version)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS analytics_dw.cdc_merchants (
    merchant_id   UInt64,
    name          Nullable(String),
    category      Nullable(String),
    city          Nullable(String),
    created_at_us UInt64,
    updated_at_us UInt64,
    _version      UInt64,
    _deleted      UInt8
) ENGINE = ReplacingMergeTree(_version)
ORDER BY merchant_id;

-- Current rows, deleted ones hidden (the filter outside FINAL, as in v_cdc_transactions).
CREATE VIEW IF NOT EXISTS analytics_dw.v_cdc_users AS
SELECT user_id, name, email, city,
       toDateTime(intDiv(created_at_us, 1000000), 'UTC') AS created_at,
       toDateTime(intDiv(updated_at_us, 1000000), 'UTC') AS updated_at,
       created_at_us, updated_at_us, _version
FROM (SELECT * FROM analytics_dw.cdc_users FINAL)
WHERE _deleted = 0;

CREATE VIEW IF NOT EXISTS analytics_dw.v_cdc_merchants AS
SELECT merchant_id, name, category, city,
       toDateTime(intDiv(created_at_us, 1000000), 'UTC') AS created_at,
       toDateTime(intDiv(updated_at_us, 1000000), 'UTC') AS updated_at,
       created_at_us, updated_at_us, _version
FROM (SELECT * FROM analytics_dw.cdc_merchants FINAL)
WHERE _deleted = 0;

-- Where each binlog stream stands: the position after the last applied transaction, saved
-- after its data landed. One row per save; the highest _version (a clock that never goes
-- back) is the current one: argMax(log_file, _version), argMax(log_pos, _version).
CREATE TABLE IF NOT EXISTS analytics_dw.cdc_state (
    stream    String,
    log_file  String,
    log_pos   UInt64,
    server_id UInt32,
    saved_at  DateTime('UTC'),
    _version  UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY stream;

-- Which version scheme feeds a CDC replica (ewallet_etl/version_scheme.py, cdc_lineage.py):
-- 'micros' (JSON replay: microseconds) or 'binlog' (binlog positions). The two do not order
-- against each other, so the first run that writes cdc_transactions claims it and a run of the
-- other scheme is refused until `cdc-stream.py --reset-replica` empties the replicas and this
-- table. The newest row per table_name is the claim.
CREATE TABLE IF NOT EXISTS analytics_dw.cdc_lineage (
    table_name String,
    scheme     String,
    claimed_by String,
    claimed_at DateTime('UTC'),
    _version   UInt64
) ENGINE = ReplacingMergeTree(_version)
ORDER BY table_name;
