"""CDC replay on both ClickHouse engines: the sample file's exact final state, replays, formats
(JSON Lines, Debezium, stdin), order/duplicate/split-proofness (a property test on the real
warehouse), deletes, conflicts, money to the cent, exit codes, a killed run and a dead server."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ewallet_etl.config import Settings
from ewallet_etl.core.events import BadEvent, ChangeEvent, Op, parse_object
from ewallet_etl.pipelines.replay import CdcReport, apply_items, run_replay, to_change
from tests.helpers import ROOT, as_decimal, env_for, open_warehouse

pytestmark = pytest.mark.integration

SAMPLE = ROOT / "cdc_events.json"
EXPECTED = {  # the latest valid state of each transaction of the sample
    "TX1001": (1, 1, Decimal("50000.00"), "Medium", "SUCCESS", "2025-01-10 08:15:00"),
    "TX1003": (2, 2, Decimal("150000.00"), "High", "SUCCESS", "2025-01-10 12:30:00"),
    "TX1004": (2, 3, Decimal("10000.00"), "Low", "FAILED", "2025-01-10 13:05:00"),
    "TX1008": (2, 1, Decimal("65000.00"), "Medium", "SUCCESS", "2025-01-11 09:45:00"),
    "TX1011": (3, 1, Decimal("99999.99"), "Medium", "PENDING", "2025-01-13 07:05:00"),
}
# Deleted by a delete event, or retracted: the newest version of TX1009 (REFUNDED, on
# 2025-02-30) and TX1010 (status SETTLED) is refused, so their older SUCCESS is not counted;
# TX1013 and TX1015 never had a valid version.
DELETED = ["TX1002", "TX1005", "TX1006", "TX1007", "TX1009", "TX1010", "TX1013", "TX1015"]
# The sample's valid events alone (`debezium_sample`): TX1009 and TX1010 end SUCCESS.
VALID_ONLY = {
    **EXPECTED,
    "TX1009": (1, 2, Decimal("49999.99"), "Low", "SUCCESS", "2025-01-12 10:00:00"),
    "TX1010": (3, 3, Decimal("100000.00"), "High", "SUCCESS", "2025-01-12 18:20:00"),
}
SAMPLE_REASONS = {
    "unknown op": 1, "missing _version": 1, "amount is not a decimal number": 1,
    "transaction_time is not an ISO-8601 time": 1, "unknown status": 1,
    "user_id out of range (0..4294967295)": 1,
}
STATE_SQL = (
    "SELECT transaction_id, user_id, merchant_id, amount, amount_category, status, "
    "toString(transaction_time) FROM analytics_dw.v_cdc_transactions "
    "WHERE transaction_id LIKE {p:String} ORDER BY transaction_id"
)
DELETED_SQL = (
    "SELECT transaction_id FROM (SELECT * FROM analytics_dw.cdc_transactions FINAL) "
    "WHERE _deleted = 1 ORDER BY transaction_id"
)
QUARANTINED_SQL = (
    "SELECT reason, count() FROM analytics_dw.etl_quarantine FINAL "
    "WHERE source = 'cdc_events' GROUP BY reason"
)


def as_state(rows: list) -> dict[str, tuple]:
    return {r[0]: (int(r[1]), int(r[2]), as_decimal(r[3]), r[4], r[5], r[6]) for r in rows}


def cdc_state(wh, prefix: str = "") -> dict[str, tuple]:
    return as_state(wh.query(STATE_SQL, {"p": prefix + "%"}))


def replay(settings: Settings, text: str, batch_size: int = 20_000,
           source_db: str | None = None) -> CdcReport:
    return run_replay(settings, io.StringIO(text), "test", batch_size, source_db=source_db)


def sample_lines() -> str:
    return "\n".join(json.dumps(e) for e in json.loads(SAMPLE.read_text())) + "\n"


# --- the sample file ----------------------------------------------------------------------------

def test_sample_file_gives_exactly_the_latest_state(settings, wh):
    report = replay(settings, SAMPLE.read_text())
    assert (report.events_read, report.rejected, report.conflicts) == (32, 6, 0)
    assert report.status == "completed_with_rejects"
    assert cdc_state(wh) == EXPECTED
    assert [r[0] for r in wh.query(DELETED_SQL)] == DELETED
    assert dict(wh.query(QUARANTINED_SQL)) == SAMPLE_REASONS


def test_replaying_twice_changes_nothing(settings, wh):
    first = replay(settings, SAMPLE.read_text())
    second = replay(settings, SAMPLE.read_text())
    assert (first.rows_applied, first.rejected) == (second.rows_applied, second.rejected)
    assert cdc_state(wh) == EXPECTED
    assert wh.query("SELECT count() FROM analytics_dw.cdc_transactions FINAL") == [(13,)]
    assert dict(wh.query(QUARANTINED_SQL)) == SAMPLE_REASONS  # not doubled
    runs = wh.query("SELECT status, rows_read, rows_rejected FROM analytics_dw.etl_runs "
                    "WHERE pipeline = 'cdc_events'")
    assert runs == [("completed_with_rejects", 32, 6)] * 2


@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_any_batch_size_gives_the_same_state(settings, wh, batch_size):
    replay(settings, SAMPLE.read_text(), batch_size)
    assert cdc_state(wh) == EXPECTED


def test_json_lines(settings, wh):
    report = replay(settings, sample_lines())
    assert (report.events_read, report.rejected) == (32, 6)
    assert cdc_state(wh) == EXPECTED


def debezium_sample() -> str:
    """The sample's valid events as Debezium envelopes, binlog positions in version order,
    kept in the file's (disordered, duplicated) order, with tombstones and both wrappings."""
    valid = []
    for element in json.loads(SAMPLE.read_text(), parse_float=Decimal):
        event = parse_object(element, "")
        if not isinstance(event, ChangeEvent):
            continue
        try:
            to_change(event)
        except BadEvent:
            continue
        valid.append((element, event))
    ranks = {v: i for i, v in enumerate(sorted({e.version for _, e in valid}))}
    lines = []
    for n, (element, event) in enumerate(valid):
        row = {k: str(v) if isinstance(v, Decimal) else v
               for k, v in element.items() if k not in ("op", "_version")}
        if "transaction_time" in row:
            moment = datetime.fromisoformat(row["transaction_time"])
            row["transaction_time"] = int(moment.timestamp()) * 1000
        op = {Op.INSERT: "c", Op.UPDATE: "u", Op.DELETE: "d"}[event.op]
        envelope = {"before": row if op in "ud" else None, "after": None if op == "d" else row,
                    "op": op, "ts_ms": 1737000000000,
                    "source": {"connector": "mysql", "db": "ewallet_source",
                               "table": "transactions", "file": "mysql-bin.000003",
                               "pos": 4000 + 300 * ranks[event.version], "row": 0,
                               "ts_ms": 1736496900000}}
        lines.append(json.dumps({"schema": {}, "payload": envelope} if n % 2 else envelope))
        if op == "d":
            lines.append("null")  # Kafka tombstone
    return "\n".join(lines)


def test_debezium(settings, wh):
    # The sample names db ewallet_source, not this test's source database (tests/conftest.py).
    report = replay(settings, debezium_sample(), source_db="ewallet_source")
    assert (report.events_read, report.rejected, report.skipped) == (26, 0, 0)
    assert cdc_state(wh) == VALID_ONLY
    assert [r[0] for r in wh.query(DELETED_SQL)] == ["TX1002", "TX1005", "TX1006", "TX1007"]


# --- order-proof, duplicate-proof, split-proof: a property test on the real warehouse -----------

BASE_VERSION = 1_736_496_900_000_000
histories = st.dictionaries(
    st.integers(0, 4),
    st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
        ["SUCCESS", "PENDING", "FAILED", "REFUNDED", None]), st.integers(0, 10**12)),
        min_size=1, max_size=4, unique_by=lambda t: t[0]),
    min_size=1, max_size=5)


def history_events(prefix: str, history: dict) -> list[ChangeEvent]:
    events = []
    for k, versions in history.items():
        key = f"{prefix}-{k}"
        for v, status, cents in versions:
            row = {"transaction_id": key, "user_id": k + 1, "merchant_id": v % 3 + 1,
                   "amount": f"{cents // 100}.{cents % 100:02d}", "status": status,
                   "transaction_time": f"2025-01-{v % 28 + 1:02d}T08:00:{v % 60:02d}Z"}
            op = Op.DELETE if status is None else Op.UPDATE
            events.append(ChangeEvent(op, "transactions", key, row, BASE_VERSION + v))
    return events


def model_state(events: list[ChangeEvent]) -> dict[str, tuple]:
    latest: dict[str, ChangeEvent] = {}
    for e in events:
        if e.key not in latest or e.version > latest[e.key].version:
            latest[e.key] = e
    state = {}
    for key, e in latest.items():
        if e.op is not Op.DELETE:
            change = to_change(e)
            moment = datetime.fromtimestamp(change.transaction_time, timezone.utc)
            category = ("Low" if change.amount < 50000 else
                        "Medium" if change.amount < 100000 else "High")
            state[key] = (change.user_id, change.merchant_id, change.amount, category,
                          change.status, moment.strftime("%Y-%m-%d %H:%M:%S"))
    return state


@hsettings(max_examples=10, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories, seed=st.integers(0, 2**32 - 1))
def test_shuffled_duplicated_split_replays_give_the_same_state(settings, wh, history, seed):
    rnd = random.Random(seed)
    prefix = f"P{uuid.uuid4().hex[:10]}"  # each example owns its keys in the shared database
    events = history_events(prefix, history)
    expected = model_state(events)
    for _ in range(2):  # a second, differently ordered replay must change nothing
        shuffled = events + rnd.sample(events, rnd.randint(0, len(events)))
        rnd.shuffle(shuffled)
        report = CdcReport(run_id="property", started_at=datetime.now(timezone.utc))
        apply_items(wh, shuffled, report, batch_size=rnd.randint(2, 8))
        assert report.rejected == 0
        assert cdc_state(wh, prefix) == expected


# --- deletes, conflicts, filters, money ---------------------------------------------------------

def flat(op: str, key: str, version: str, **row) -> str:
    return json.dumps({"op": op, "transaction_id": key, **row, "_version": version})


ROW = {"user_id": 1, "merchant_id": 2, "amount": "75000.00", "status": "PENDING",
       "transaction_time": "2025-01-10T09:00:00Z"}


def test_delete_hides_reinsert_shows_and_stale_replays_change_nothing(settings, wh):
    v1 = flat("insert", "TXD", "2025-01-10T09:00:00.1Z", **ROW)
    v2 = flat("delete", "TXD", "2025-01-10T09:00:00.2Z")
    v3 = flat("insert", "TXD", "2025-01-10T09:00:00.3Z", **{**ROW, "status": "SUCCESS"})
    replay(settings, v1)
    replay(settings, v2)
    assert cdc_state(wh) == {}
    replay(settings, v3)
    replay(settings, v2 + "\n" + v1)
    assert cdc_state(wh) == {"TXD": (1, 2, Decimal("75000.00"), "Medium", "SUCCESS",
                                     "2025-01-10 09:00:00")}


def test_filters_on_the_view_never_see_an_older_version(settings, wh):
    replay(settings, flat("insert", "TXF", "2025-01-10T09:00:00.1Z", **ROW))
    replay(settings, flat("update", "TXF", "2025-01-10T09:00:00.2Z",
                          **{**ROW, "status": "SUCCESS"}))
    count = "SELECT count() FROM analytics_dw.v_cdc_transactions WHERE status = {s:String}"
    assert wh.query(count, {"s": "PENDING"}) == [(0,)]
    assert wh.query(count, {"s": "SUCCESS"}) == [(1,)]
    replay(settings, flat("delete", "TXF", "2025-01-10T09:00:00.3Z"))
    assert wh.query(count, {"s": "SUCCESS"}) == [(0,)]
    assert wh.query(count, {"s": "PENDING"}) == [(0,)]


def test_equal_versions_with_different_content_are_quarantined(settings, wh):
    report = replay(settings, "\n".join([
        flat("insert", "TXC", "2025-01-10T09:00:00.1Z", **ROW),
        flat("update", "TXC", "2025-01-10T09:00:00.2Z", **{**ROW, "status": "SUCCESS"}),
        flat("update", "TXC", "2025-01-10T09:00:00.2Z", **{**ROW, "status": "FAILED"}),
    ]))
    assert (report.rejected, report.conflicts) == (2, 2)
    assert cdc_state(wh)["TXC"][4] == "PENDING"
    assert dict(wh.query(QUARANTINED_SQL)) == {"conflict: same _version, different content": 2}


def test_money_is_exact_to_the_cent(settings, wh):
    amounts = ['"9999999999999999.99"', '"0.01"', '"0.10"', "12345.67", "100000", '"49999.99"']
    lines = [flat("insert", f"TXM{i}", "2025-01-10T09:00:00Z", **{**ROW, "amount": "A"})
             .replace('"A"', amount) for i, amount in enumerate(amounts)]
    assert replay(settings, "\n".join(lines)).rejected == 0
    got = [v[2] for v in cdc_state(wh, "TXM").values()]
    want = [Decimal(a.strip('"')) for a in amounts]
    assert got == want
    total = wh.query("SELECT toString(sum(amount)) FROM analytics_dw.v_cdc_transactions")
    assert Decimal(total[0][0]) == sum(want)


# --- the command line, as a user runs it ---------------------------------------------------------

PROBE = ("import json, sys; from ewallet_etl.config import Settings; "
         "from ewallet_etl.warehouse import connect; "
         "wh = connect(Settings.from_env().warehouse); "
         "print(json.dumps(wh.query(sys.argv[1], {'p': '%'}), default=str))")


def cli(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cdc-stream.py", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment. chDB lets one process open a folder, and this test process
    holds the fixture's: the CLI gets a folder of its own, read back by another process."""
    env = env_for(settings)
    if settings.warehouse.kind == "chdb":
        env["CLICKHOUSE_URL"] = (f"chdb://{tmp_path / 'cli-chdb'}"
                                 f"?database={settings.warehouse.database}")
    return env


def cli_state(settings: Settings, env: dict[str, str]) -> dict[str, tuple]:
    if settings.warehouse.kind != "chdb":
        wh = open_warehouse(settings.warehouse)
        try:
            return cdc_state(wh)
        finally:
            wh.close()
    done = subprocess.run([sys.executable, "-c", PROBE, STATE_SQL], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return as_state(json.loads(done.stdout))


def test_exit_codes_file_and_stdin(settings, cli_env):
    done = cli(cli_env)  # the default input, cdc_events.json
    assert done.returncode == 3, done.stderr
    assert "read=32" in done.stderr and "rejected=6" in done.stderr
    clean = "\n".join(json.dumps(e) for e in json.loads(SAMPLE.read_text())
                      if e["transaction_id"] in EXPECTED and "SETTLED" not in json.dumps(e)
                      and "2025-02-30" not in json.dumps(e))
    done = cli(cli_env, "-", "--batch-size", "3", "--optimize", stdin=clean)
    assert done.returncode == 0, done.stderr
    assert cli_state(settings, cli_env) == EXPECTED


def test_a_killed_run_is_repaired_by_running_it_again(settings, cli_env):
    killed = cli({**cli_env, "ETL_KILL_AT": "cdc_after_first_batch"}, "--batch-size", "5")
    assert killed.returncode == -9
    done = cli(cli_env, "--batch-size", "5")
    assert done.returncode == 3, done.stderr
    assert cli_state(settings, cli_env) == EXPECTED


def test_unreachable_clickhouse_fails_in_one_clear_line():
    env = {**os.environ, "CLICKHOUSE_URL": "clickhouse://etl:s3cret-pw@127.0.0.1:1/analytics_dw",
           "ETL_MAX_RETRIES": "1"}
    done = cli(env, str(SAMPLE))
    assert done.returncode == 1
    errors = [ln for ln in done.stderr.splitlines() if " ERROR " in ln]
    assert len(errors) == 1, done.stderr
    assert "failed: ClickHouse at clickhouse://etl@127.0.0.1:1/analytics_dw" in errors[0]
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_runs_that_died_on_this_host_are_closed_as_killed_others_stay_open(settings, wh):
    import socket

    import pyarrow as pa

    from ewallet_etl.audit import UTC_SECONDS

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    started = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
    wh.insert("etl_run_starts", pa.table({
        "run_id": ["deadhere", "elsewhere", "alivehere"],
        "pipeline": ["cdc_events"] * 3,
        "mode": ["replay"] * 3,
        "started_at": pa.array([started] * 3, UTC_SECONDS),
        "host": [socket.gethostname(), "another-host", socket.gethostname()],
        "pid": pa.array([int(dead.stdout), 1, os.getppid()], pa.uint32()),
    }))
    report = replay(settings, sample_lines())
    killed = wh.query("SELECT run_id, status, toString(started_at) FROM analytics_dw.etl_runs "
                      "WHERE status = 'killed'")
    assert killed == [("deadhere", "killed", "2026-01-05 08:00:00")]
    still_open = wh.query("SELECT run_id FROM analytics_dw.etl_run_starts WHERE run_id NOT IN "
                          "(SELECT run_id FROM analytics_dw.etl_runs) ORDER BY run_id")
    assert still_open == [("alivehere",), ("elsewhere",)]
    assert report.status == "completed_with_rejects"  # the sample's bad lines, as always
