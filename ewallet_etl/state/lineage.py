"""Which version scheme feeds a CDC replica: the claim in `analytics_dw.cdc_lineage` (I/O).

The rules are in `version_scheme.py`; this module only reads and writes them. One claim per
replica table (only `cdc_transactions` has two possible feeders: the JSON replay and the
binlog). The first run that applies an event claims the table for its scheme; the claim stands
until `reset_replicas` (`cdc-stream.py --reset-replica`) empties the CDC tables and the claims
together. Runs of two schemes started at the same moment on an unclaimed table can both
claim it: run one CDC command per warehouse at a time (the binlog already needs that).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from ewallet_etl.core.version_scheme import (
    Scheme,
    parse_scheme,
    start_refusal,
    unclaimed_rows_problem,
    unknown_claim_problem,
)
from ewallet_etl.state.positions import forget_positions
from ewallet_etl.warehouse import Warehouse

log = logging.getLogger(__name__)

LINEAGE_TABLE = "cdc_lineage"
# What --reset-replica empties: every CDC replica, the binlog positions (so the next binlog run
# takes a new snapshot instead of resuming into an empty table) and the claims. Identifiers
# from this list only.
RESET_TABLES = ("cdc_transactions", "cdc_users", "cdc_merchants", "cdc_state", LINEAGE_TABLE)

READ_CLAIM_SQL = """
SELECT argMax(scheme, _version), argMax(claimed_by, _version)
FROM analytics_dw.cdc_lineage
WHERE table_name = {table:String}
GROUP BY table_name
"""
# Does the replica hold any row at all (tombstones count)? One row read, whatever its size.
HAS_ROWS_SQL = "SELECT count() FROM (SELECT 1 FROM analytics_dw.{table} LIMIT 1)"
# The history of a replica written before claims existed: binlog positions saved (only the
# binlog CDC writes them: cdc_state, then etl_state), replay runs audited (only the replay
# audits as 'cdc_events').
BINLOG_HISTORY_SQL = (
    "SELECT count() FROM (SELECT 1 FROM analytics_dw.cdc_state LIMIT 1)",
    "SELECT count() FROM (SELECT 1 FROM analytics_dw.etl_state WHERE kind = 'binlog' LIMIT 1)",
)
REPLAY_HISTORY_SQL = ("SELECT count() FROM (SELECT 1 FROM analytics_dw.etl_runs "
                      "WHERE pipeline = 'cdc_events' AND mode = 'replay' LIMIT 1)")
CLAIMABLE = ("cdc_transactions",)  # tables a claim may name (HAS_ROWS_SQL's identifier)


class LineageError(RuntimeError):
    """The replica cannot be fed by this run until it is reset; the message says how."""


@dataclass(frozen=True)
class Claim:
    scheme: Scheme
    claimed_by: str


def read_claim(wh: Warehouse, table: str) -> Claim | None:
    """The table's claim; None when unclaimed and empty. LineageError when it holds rows
    without a claim, or a claim this program does not know."""
    if table not in CLAIMABLE:
        raise ValueError(f"no claims on {table!r}")
    rows = wh.query(READ_CLAIM_SQL, {"table": table})
    if rows:
        text, claimed_by = rows[0]
        try:
            return Claim(parse_scheme(str(text)), str(claimed_by))
        except ValueError:
            raise LineageError(unknown_claim_problem(table, str(text))) from None
    if wh.query(HAS_ROWS_SQL.format(table=table))[0][0]:
        return _claim_from_history(wh, table)
    return None


def _claim_from_history(wh: Warehouse, table: str) -> Claim:
    """A replica written before claims existed. Fed by the binlog alone (positions saved, no
    replay ever audited), it is claimed for binlog positions and goes on; otherwise (a replay,
    whose Debezium events may carry either scheme, or both) only a reset makes it sure."""
    binlog = any(wh.query(sql)[0][0] for sql in BINLOG_HISTORY_SQL)
    replay = wh.query(REPLAY_HISTORY_SQL)[0][0]
    if binlog and not replay:
        write_claim(wh, table, Scheme.BINLOG, "inferred: fed by the binlog CDC alone")
        return Claim(Scheme.BINLOG, "inferred: fed by the binlog CDC alone")
    raise LineageError(unclaimed_rows_problem(table))


def write_claim(wh: Warehouse, table: str, scheme: Scheme, claimed_by: str) -> None:
    """Record that `table` is fed by `scheme` from now on (before any of its rows land)."""
    now = time.time_ns()
    wh.insert(LINEAGE_TABLE, pa.table({
        "table_name": pa.array([table], pa.string()),
        "scheme": pa.array([scheme.value], pa.string()),
        "claimed_by": pa.array([claimed_by], pa.string()),
        "claimed_at": pa.array([datetime.fromtimestamp(now // 10**9, timezone.utc)],
                               pa.timestamp("s", tz="UTC")),
        "_version": pa.array([now // 1000], pa.uint64()),
    }))
    log.info("%s is now fed by %s versions (%s)", table, scheme.label, claimed_by)


def claim_replica(wh: Warehouse, table: str, scheme: Scheme, claimed_by: str) -> str | None:
    """For a run that feeds `table` with one scheme throughout (the binlog): claim the table
    if nobody has, and return None; or return why the run must not start."""
    try:
        claim = read_claim(wh, table)
    except LineageError as exc:
        return str(exc)
    if claim is None:
        write_claim(wh, table, scheme, claimed_by)
        return None
    return start_refusal(table, claim.scheme, scheme)


def reset_replicas(wh: Warehouse) -> None:
    """Empty the CDC replicas, the binlog positions and the claims: the next run of either
    source starts afresh (a replay from its file, the binlog from a new snapshot)."""
    for table in RESET_TABLES:
        wh.execute(f"TRUNCATE TABLE IF EXISTS analytics_dw.{table}")
    forget_positions(wh, "reset")  # etl_state is history: a reset is a save of no position
