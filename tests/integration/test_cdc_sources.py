"""Sources that share `cdc_transactions` (issue 12), on the real MariaDB and both ClickHouse
engines: versions of one scheme per replica table (a JSON replay's microseconds or the binlog's
positions, never both), the documented reset, and Debezium events of other databases or
tables ignored. Runs are in-process (`binlog_main`, `cdc_cli.run_command`), so exit codes and
log lines are those a user sees."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ewallet_etl.cdc_cli import build_parser, run_command
from ewallet_etl.config import Settings
from ewallet_etl.core.changes import to_arrow, to_change
from ewallet_etl.core.events import ChangeEvent, Op
from ewallet_etl.pipelines.binlog import binlog_main
from tests.helpers import ROOT, as_decimal, env_for, mysql_exec

pytestmark = pytest.mark.integration

SAMPLE = ROOT / "cdc_events.json"
MICROS_ON_BINLOG = ("version scheme microsecond does not match cdc_transactions (fed by "
                    "binlog-position versions); see README: reset")
BINLOG_ON_MICROS = ("version scheme binlog-position does not match cdc_transactions (fed by "
                    "microsecond versions); see README: reset")
RAW_SQL = ("SELECT transaction_id, _version, _deleted, status, toString(amount) "
           "FROM analytics_dw.cdc_transactions ORDER BY transaction_id, _version, status")
STATE_SQL = ("SELECT transaction_id, user_id, merchant_id, toString(amount), status, "
             "toString(transaction_time) FROM analytics_dw.v_cdc_transactions")
QUARANTINED_SQL = ("SELECT reason, count() FROM analytics_dw.etl_quarantine FINAL "
                   "WHERE source = 'cdc_events' GROUP BY reason")
CLAIMS_SQL = "SELECT table_name, scheme FROM analytics_dw.cdc_lineage FINAL"
RUNS_SQL = ("SELECT status, rows_read, rows_loaded, rows_rejected, window_to "
            "FROM analytics_dw.etl_runs WHERE pipeline = 'cdc_events' AND mode = 'replay' "
            "ORDER BY started_us, finished_at")


def cdc(settings: Settings, *argv: str) -> int:
    """`cdc-stream.py ARGV` against these settings, in this process (chDB shares its folder)."""
    return run_command(settings, build_parser().parse_args(list(argv)))


def replica(wh) -> dict[str, tuple]:
    return {r[0]: (int(r[1]), int(r[2]), as_decimal(r[3]), r[4], r[5])
            for r in wh.query(STATE_SQL)}


def source(db: str) -> dict[str, tuple]:
    rows = mysql_exec(db, "SELECT transaction_id, user_id, merchant_id, amount, status, "
                          "transaction_time FROM transactions")
    return {r[0]: (int(r[1]), int(r[2]), as_decimal(r[3]), r[4], str(r[5])) for r in rows}


def write_lines(path: Path, records: list) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records))
    return str(path)


def flat(op: str, key: str, version: str, status: str = "SUCCESS") -> dict:
    return {"op": op, "transaction_id": key, "user_id": 1, "merchant_id": 2,
            "amount": "75000.00", "status": status, "transaction_time": "2025-01-10T09:00:00Z",
            "_version": version}


def debezium(op: str, key: str, pos: int, status: str = "SUCCESS", *, db: str | None,
             table: str = "transactions", image: dict | None = None) -> dict:
    row = image or {"transaction_id": key, "user_id": 3, "merchant_id": 1, "amount": "12.34",
                    "status": status, "transaction_time": 1736496900000}
    src = {"connector": "mysql", "table": table, "file": "binlog.000999", "pos": pos, "row": 0}
    if db is not None:
        src["db"] = db
    return {"before": row if op == "d" else None, "after": None if op == "d" else row,
            "op": op, "ts_ms": 1736496900000, "source": src}


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- (i) replay first, then the binlog -----------------------------------------------------------

def test_binlog_after_a_replay_is_refused_until_the_reset(settings, wh, caplog):
    db = settings.mysql_database
    assert cdc(settings, str(SAMPLE)) == 3  # the sample's 6 bad events
    assert wh.query(CLAIMS_SQL) == [("cdc_transactions", "micros")]
    mysql_exec(db, "UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX1001'")
    before = wh.query(RAW_SQL)

    caplog.clear()
    assert binlog_main(settings) == 2
    [error] = errors(caplog)
    assert "cdc_transactions" in error and "--reset-replica" in error, error
    assert wh.query(RAW_SQL) == before  # nothing applied
    # nothing saved
    assert wh.query("SELECT count() FROM analytics_dw.etl_state WHERE kind = 'binlog'") == [(0,)]
    assert replica(wh)["TX1001"][3] == "SUCCESS"

    assert cdc(settings, "--reset-replica") == 0
    assert wh.query(RAW_SQL) == [] and wh.query(CLAIMS_SQL) == []
    assert wh.query("SELECT status FROM analytics_dw.etl_runs WHERE mode = 'reset-replica'") == [
        ("success",)]
    assert binlog_main(settings) == 0
    assert wh.query(CLAIMS_SQL) == [("cdc_transactions", "binlog")]
    assert replica(wh) == source(db)
    assert replica(wh)["TX1001"][3] == "REFUNDED"

    mysql_exec(db, "UPDATE transactions SET status = 'FAILED' WHERE transaction_id = 'TX1003'")
    assert binlog_main(settings) == 0
    assert replica(wh) == source(db)


# --- (ii) binlog first, then a replay ------------------------------------------------------------

def test_a_flat_replay_after_the_binlog_is_quarantined_and_changes_nothing(settings, wh,
                                                                           tmp_path):
    db = settings.mysql_database
    assert binlog_main(settings) == 0
    before = wh.query(RAW_SQL)
    events = write_lines(tmp_path / "flat.jsonl", [
        flat("update", "TX1001", "2099-01-01T00:00:00Z", "REFUNDED"),
        flat("insert", "TXNEW", "2099-01-01T00:00:01Z"),
        flat("delete", "TX1003", "2099-01-01T00:00:02Z"),
    ])
    for _ in range(2):  # refused again, quarantined once
        assert cdc(settings, events) == 3
        assert wh.query(RAW_SQL) == before
        assert dict(wh.query(QUARANTINED_SQL)) == {MICROS_ON_BINLOG: 3}
    assert [r[:4] for r in wh.query(RUNS_SQL)] == [("completed_with_rejects", 3, 0, 3)] * 2
    assert wh.query(CLAIMS_SQL) == [("cdc_transactions", "binlog")]

    mysql_exec(db, "UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX1001'")
    assert binlog_main(settings) == 0  # the binlog goes on as if nothing happened
    assert replica(wh) == source(db)

    # Events of the table's own scheme are admitted: Debezium with a binlog position.
    same = write_lines(tmp_path / "same.jsonl", [debezium("c", "TXB1", 4, db=db)])
    assert cdc(settings, same) == 0
    assert replica(wh)["TXB1"] == (3, 1, Decimal("12.34"), "SUCCESS", "2025-01-10 08:15:00")


def test_one_file_of_both_schemes_applies_the_claimed_one_only(settings, wh, tmp_path):
    """A fresh table is claimed by the first event whose version is used; the rest of the
    file's events of the other scheme are refused, whatever their order."""
    events = write_lines(tmp_path / "mixed.jsonl", [
        {**flat("insert", "TXBAD", "2025-01-10T08:00:00Z"), "table": "users"},  # claims nothing
        flat("insert", "TXF1", "2025-01-10T09:00:00Z"),
        debezium("c", "TXD1", 4, db=None),
        flat("update", "TXF1", "2025-01-10T09:00:01Z", "REFUNDED"),
    ])
    assert cdc(settings, events) == 3
    assert set(replica(wh)) == {"TXF1"} and replica(wh)["TXF1"][3] == "REFUNDED"
    assert dict(wh.query(QUARANTINED_SQL)) == {BINLOG_ON_MICROS: 1,
                                               "table is not replicated": 1}
    assert wh.query(CLAIMS_SQL) == [("cdc_transactions", "micros")]


# --- (iii) Debezium events of other databases and tables -----------------------------------------

@pytest.mark.parametrize("override", [False, True], ids=["configured-db", "source-db-flag"])
def test_debezium_events_of_other_databases_and_tables_are_skipped(settings, wh, tmp_path,
                                                                   caplog, override):
    db = "ewallet_source" if override else settings.mysql_database
    user = {"user_id": 7, "name": "Andi", "email": "a@example.com", "city": "Jakarta",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-02T03:04:05.123456Z"}
    events = write_lines(tmp_path / "debezium.jsonl", [
        debezium("c", "TXA", 100, "PENDING", db=db),
        debezium("u", "TXA", 200, "SUCCESS", db=db),
        debezium("c", "TXO", 300, db="other_db"),
        debezium("c", "", 400, db=db, table="users", image=user),  # ours: cdc_users, dim_users
        debezium("d", "", 500, db="other_db", table="merchants", image={"merchant_id": 1}),
        debezium("c", "TXN", 600, db=None),  # no database named: this one's
        "null",  # a Kafka tombstone: no event at all
    ])
    argv = [events, "--source-db", db] if override else [events]
    caplog.set_level(logging.INFO)
    for _ in range(2):  # (iv) replaying the same file changes nothing
        assert cdc(settings, *argv) == 0
        assert replica(wh) == {
            "TXA": (3, 1, Decimal("12.34"), "SUCCESS", "2025-01-10 08:15:00"),
            "TXN": (3, 1, Decimal("12.34"), "SUCCESS", "2025-01-10 08:15:00"),
        }
    assert wh.query(QUARANTINED_SQL) == []
    assert wh.query(RUNS_SQL) == [("success", 6, 3, 0, "skipped=2")] * 2
    assert wh.query("SELECT user_id, name, city FROM analytics_dw.v_dim_users") == [
        (7, "Andi", "Jakarta")]
    logged = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()
              and "other" in r.getMessage()]
    assert logged and all("other_db.transactions=1" in m and "other_db.merchants=1" in m
                          and "users" not in m for m in logged), logged
    assert any(" skipped=2 " in r.getMessage() for r in caplog.records)


def test_debezium_of_another_database_is_skipped_without_the_flag(settings, wh, tmp_path):
    events = write_lines(tmp_path / "other.jsonl", [debezium("c", "TXE", 4, db="ewallet_source")])
    assert cdc(settings, events) == 0  # the test's source database is not ewallet_source
    assert replica(wh) == {} and wh.query(CLAIMS_SQL) == []  # a skipped event claims nothing
    assert cdc(settings, events, "--source-db", "ewallet_source") == 0
    assert set(replica(wh)) == {"TXE"}


# --- (iv) the sample, replayed twice -------------------------------------------------------------

def test_replaying_the_sample_twice_is_still_idempotent(settings, wh):
    assert cdc(settings, str(SAMPLE)) == 3
    state, raw = replica(wh), wh.query(RAW_SQL)
    assert cdc(settings, str(SAMPLE)) == 3
    assert replica(wh) == state and len(state) == 5
    assert sorted(set(wh.query(RAW_SQL))) == sorted(set(raw))
    assert sum(n for _, n in wh.query(QUARANTINED_SQL)) == 6
    assert wh.query(CLAIMS_SQL) == [("cdc_transactions", "micros")]


# --- a warehouse from before the claim -----------------------------------------------------------

def test_rows_without_a_claim_are_refused_by_both_sources_until_the_reset(settings, wh,
                                                                          caplog):
    legacy = ChangeEvent(Op.UPDATE, "transactions", "TXL", {
        "user_id": 1, "merchant_id": 1, "amount": "5.00", "status": "SUCCESS",
        "transaction_time": "2025-01-10T09:00:00Z"}, 1_736_496_900_000_000)
    wh.insert("cdc_transactions", to_arrow([to_change(legacy)]))
    before = wh.query(RAW_SQL)
    caplog.clear()
    assert cdc(settings, str(SAMPLE)) == 2
    assert binlog_main(settings) == 2
    assert len(errors(caplog)) == 2 and all("--reset-replica" in e for e in errors(caplog))
    assert wh.query(RAW_SQL) == before and wh.query(QUARANTINED_SQL) == []
    assert wh.query("SELECT count() FROM analytics_dw.etl_state WHERE kind = 'binlog'") == [(0,)]
    assert cdc(settings, "--reset-replica") == 0
    assert binlog_main(settings) == 0
    assert replica(wh) == source(settings.mysql_database)


def test_a_replica_fed_by_the_binlog_alone_before_claims_existed_goes_on(settings, wh):
    """The upgrade of a binlog deployment: its positions are saved and no replay ever ran, so
    the replica is claimed for binlog positions and the stream resumes without a reset."""
    assert binlog_main(settings) == 0
    wh.execute("TRUNCATE TABLE analytics_dw.cdc_lineage")  # as before claims existed
    mysql_exec(settings.mysql_database,
               "UPDATE transactions SET status = 'REFUNDED' WHERE transaction_id = 'TX1001'")
    assert binlog_main(settings) == 0
    assert replica(wh) == source(settings.mysql_database)
    assert wh.query("SELECT scheme FROM analytics_dw.cdc_lineage FINAL") == [("binlog",)]


# --- the command line, as a user runs it ----------------------------------------------------------

def test_the_command_line_refuses_the_binlog_after_a_replay_and_resets(settings, tmp_path):
    env = env_for(settings)
    if settings.warehouse.kind == "chdb":  # this process holds the fixture's folder
        env["CLICKHOUSE_URL"] = f"chdb://{tmp_path / 'cli'}?database={settings.warehouse.database}"

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "cdc-stream.py", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    events = write_lines(tmp_path / "flat.jsonl", [flat("insert", "TX1001", "2099-01-01T00:00Z")])
    assert run(events).returncode == 0
    refused = run("--source", "binlog")
    errors = [ln for ln in refused.stderr.splitlines() if " ERROR " in ln]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr
    assert "binlog preflight: cdc_transactions is fed by microsecond versions" in errors[0]
    assert "cdc-stream.py --reset-replica" in errors[0]
    reset = run("--reset-replica")
    assert reset.returncode == 0 and "reset: emptied cdc_transactions" in reset.stderr
    done = run("--source", "binlog")
    assert done.returncode == 0, done.stderr


def test_a_file_holding_no_change_event_is_exit_2_and_nothing_is_lost(settings, wh, tmp_path):
    wrong = tmp_path / "page.html"
    wrong.write_text("<html>\nnot events\n")
    assert cdc(settings, str(wrong)) == 2
    assert wh.query("SELECT count() FROM analytics_dw.etl_quarantine FINAL") == [(2,)]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert cdc(settings, str(empty)) == 2  # a named file with nothing in it: a mistake
