"""What the pipeline needs in a source database of your own, checked and (on request) created:
only the pipeline's own objects, never your data.

* the `checkpoint` table (the batch's watermark);
* `updated_at TIMESTAMP(6)` set by the server on every insert and update, on users, merchants
  and transactions: added when missing, or turned from a DATETIME into a TIMESTAMP;
* an index starting with `updated_at` on each (the window reads by it).

Anything else that is missing (a table, a column the pipeline reads) is reported: it is your
schema, not ours to change. Identifiers come from the fixed lists below.
"""

from __future__ import annotations

from dataclasses import dataclass

import pymysql

# table -> (key column, the columns the pipeline reads besides updated_at)
TABLES = {
    "users": ("user_id", ("user_id", "name", "email", "city")),
    "merchants": ("merchant_id", ("merchant_id", "name", "category", "city")),
    "transactions": ("transaction_id", ("transaction_id", "user_id", "merchant_id", "amount",
                                        "status", "transaction_time")),
}
CHANGE_COLUMN = ("TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) "
                 "ON UPDATE CURRENT_TIMESTAMP(6)")
CHECKPOINT_DDL = """CREATE TABLE IF NOT EXISTS checkpoint (
    pipeline_name  VARCHAR(100) NOT NULL,
    last_synced_at DATETIME(6)  NOT NULL,
    updated_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                   ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (pipeline_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

COLUMNS_SQL = """
SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('users', 'merchants', 'transactions',
                                                   'checkpoint')
"""
INDEXES_SQL = """
SELECT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = DATABASE() AND SEQ_IN_INDEX = 1 AND COLUMN_NAME = 'updated_at'
"""


@dataclass(frozen=True)
class Step:
    why: str
    sql: str  # empty: nothing we may do, the owner of the schema must
    note: str = ""


def plan(columns: dict[str, dict[str, str]], indexed: set[str]) -> list[Step]:
    """The steps that make the source ready (pure: from what information_schema says)."""
    steps: list[Step] = []
    for table, (key, needed) in TABLES.items():
        have = columns.get(table)
        if have is None:
            steps.append(Step(f"table {table} is missing", ""))
            continue
        for column in needed:
            if column not in have:
                steps.append(Step(f"{table}.{column} is missing", ""))
        kind = have.get("updated_at")
        if kind is None:
            steps.append(Step(f"{table}.updated_at is missing",
                              f"ALTER TABLE {table} ADD COLUMN updated_at {CHANGE_COLUMN}",
                              "existing rows get the time of the ALTER: the first run loads "
                              "them all anyway"))
        elif kind != "timestamp":
            steps.append(Step(f"{table}.updated_at is {kind.upper()}, not TIMESTAMP",
                              f"ALTER TABLE {table} MODIFY updated_at {CHANGE_COLUMN}",
                              "run in a session whose time_zone is the one the values were "
                              "written in (this command uses the server's global time zone)"))
        if table not in indexed:
            steps.append(Step(f"{table} has no index starting with updated_at",
                              f"CREATE INDEX idx_{table}_updated_at ON {table} "
                              f"(updated_at, {key})",
                              "the window reads by updated_at: without it, a full scan"))
    if "checkpoint" not in columns:
        steps.append(Step("table checkpoint is missing", CHECKPOINT_DDL))
    return steps


def inspect(conn: pymysql.connections.Connection) -> list[Step]:
    with conn.cursor() as cur:
        cur.execute(COLUMNS_SQL)
        columns: dict[str, dict[str, str]] = {}
        for table, column, kind in cur.fetchall():
            columns.setdefault(table, {})[column] = kind.lower()
        cur.execute(INDEXES_SQL)
        indexed = {table for table, _ in cur.fetchall()}
    return plan(columns, indexed)


def can_see_transactions(conn: pymysql.connections.Connection) -> bool:
    """Whether the user may read INNODB_TRX (the PROCESS privilege: the window's cap)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.INNODB_TRX LIMIT 0")
        return True
    except pymysql.MySQLError:
        return False


def apply(conn: pymysql.connections.Connection, steps: list[Step]) -> None:
    """Run the steps that have SQL, in a session in the server's global time zone (so that a
    DATETIME becomes the TIMESTAMP of the instant its writers meant)."""
    with conn.cursor() as cur:
        cur.execute("SET time_zone = @@global.time_zone")
        for step in steps:
            if step.sql:
                cur.execute(step.sql)
        cur.execute("SET time_zone = '+00:00'")
