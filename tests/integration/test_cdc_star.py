"""Change streams feed the star schema (issue 15): the binlog CDC and the event replay write
fact_sales, dim_users and dim_merchants with the batch's rules and versions.

The oracle is the batch itself: a full batch load of the same source into a second warehouse
must give the same rows in the v_* views (and the same answers to the two query files) as the
stream, and `reconcile` must find the stream's fact_sales equal to the source per day, to the
cent. Real MariaDB (binlog ROW/FULL) and both ClickHouse engines.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator

import pytest

from ewallet_etl.config import Settings
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.binlog import binlog_main, run_binlog
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.pipelines.replay import run_replay
from ewallet_etl.sources.binlog import ColumnsMissing
from ewallet_etl.state import store
from tests.debezium_shapes import Row, dimension_event, event, history
from tests.helpers import ROOT, mysql_exec, opened
from tests.integration.test_binlog_cdc import Writer
from tests.integration.test_source_sequences import INSERT_TX, NO_FK, write_as

pytestmark = pytest.mark.integration

FACT_ROWS = ("SELECT transaction_id, user_key, merchant_key, toString(amount), amount_category, "
             "status, toString(transaction_time), toString(transaction_date), "
             "toString(updated_at) FROM analytics_dw.v_fact_sales ORDER BY transaction_id")
USER_ROWS = ("SELECT user_key, user_id, name, email, city, toString(updated_at) "
             "FROM analytics_dw.v_dim_users ORDER BY user_id")
MERCHANT_ROWS = ("SELECT merchant_key, merchant_id, name, category, city, toString(updated_at) "
                 "FROM analytics_dw.v_dim_merchants ORDER BY merchant_id")
QUERY_FILES = ("Querying_Total_Transaction_User.sql", "Querying_Total_Transaction_Merchant.sql")


@pytest.fixture
def settings(stream_settings: Settings) -> Settings:
    return stream_settings


@pytest.fixture
def batch_twin(settings: Settings) -> Iterator[Settings]:
    """The same source, loaded by the batch into a warehouse of its own (the oracle)."""
    twin = replace(settings, warehouse=replace(settings.warehouse,
                                               database=settings.warehouse.database + "_batch"),
                   pipeline_name=settings.pipeline_name + "_twin")
    yield twin
    with opened(twin.warehouse) as wh:
        wh.execute("DROP DATABASE IF EXISTS analytics_dw")


def star_state(settings: Settings) -> dict[str, list[tuple]]:
    with opened(settings.warehouse) as wh:
        state = {"facts": [tuple(r) for r in wh.query(FACT_ROWS)],
                 "users": [tuple(r) for r in wh.query(USER_ROWS)],
                 "merchants": [tuple(r) for r in wh.query(MERCHANT_ROWS)]}
        for name in QUERY_FILES:
            text = (ROOT / name).read_text()
            statement = "\n".join(line for line in text.splitlines()
                                  if not line.lstrip().startswith("--")).strip().rstrip(";")
            state[name] = [tuple(r) for r in wh.query(statement)]
    return state


def assert_star_equals_a_batch_load(settings: Settings, twin: Settings) -> None:
    run_batch(twin, full_refresh=True)
    streamed, batched = star_state(settings), star_state(twin)
    for part in batched:
        assert streamed[part] == batched[part], part
    assert batched["facts"], "the comparison must not be vacuous"
    reconciliation = compare(settings)
    assert reconciliation.ok, reconciliation


def test_the_binlog_keeps_the_star_schema_equal_to_a_batch_load(settings, batch_twin):
    run_binlog(settings)  # the snapshot: the seed's 3 users, 3 merchants, 4 transactions
    assert_star_equals_a_batch_load(settings, batch_twin)
    writer = Writer(settings.mysql_database, seed=7, transactions=200)
    writer.run()  # inserts, updates, deletes, key changes, user and merchant changes
    assert writer.error is None
    report = run_binlog(settings)
    assert report.events > 0 and report.apply.star_rows > 0
    assert_star_equals_a_batch_load(settings, batch_twin)


def test_a_commit_is_in_the_business_queries_after_one_micro_batch(settings):
    run_binlog(settings)
    before = star_state(settings)
    mysql_exec(settings.mysql_database,
               "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
               "transaction_time) VALUES ('TXNEW1', 2, 1, 12345.67, 'SUCCESS', "
               "'2025-01-11 09:30:00')")
    run_binlog(settings)
    after = star_state(settings)
    new = [row for row in after["facts"] if row[0] == "TXNEW1"]
    assert [(Decimal(r[3]), r[4], r[5], r[6]) for r in new] == [
        (Decimal("12345.67"), "Low", "SUCCESS", "2025-01-11 09:30:00")]
    user_query = dict(((r[0], str(r[1])), r[2]) for r in before[QUERY_FILES[0]])
    budi = ("Budi Santoso", "2025-01-11")
    changed = dict(((r[0], str(r[1])), r[2]) for r in after[QUERY_FILES[0]])
    assert Decimal(str(changed[budi])) == Decimal(str(user_query[budi])) + Decimal("12345.67")


def test_deletes_refusals_and_late_users_in_the_stream_follow_the_batch_rules(
        settings, batch_twin):
    run_binlog(settings)
    db = settings.mysql_database
    mysql_exec(db, "DELETE FROM transactions WHERE transaction_id = 'TX1001'")
    mysql_exec(db, "UPDATE transactions SET amount = -5.00 WHERE transaction_id = 'TX1003'")
    write_as(db, [NO_FK], INSERT_TX,
             ("TXLATE", 77, 1, "70000.00", "SUCCESS", "2025-01-12 08:00:00"))
    report = run_binlog(settings)
    facts = {row[0]: row for row in star_state(settings)["facts"]}
    assert "TX1001" not in facts  # deleted: tombstoned
    assert "TX1003" not in facts  # refused (negative amount): its old version retracted
    # a user not in the source yet: the fact loads against an inferred member
    assert Decimal(facts["TXLATE"][3]) == Decimal("70000.00")
    assert report.apply.reject_reasons.get("amount is negative") == 1
    with opened(settings.warehouse) as wh:
        assert wh.query("SELECT name FROM analytics_dw.v_dim_users WHERE user_id = 77") == [("",)]
    mysql_exec(db, "INSERT INTO users (user_id, name, email) VALUES (77, 'Late User', 'l@x.id')")
    run_binlog(settings)
    with opened(settings.warehouse) as wh:
        assert wh.query("SELECT name FROM analytics_dw.v_dim_users WHERE user_id = 77") == [
            ("Late User",)]
    assert_star_equals_a_batch_load(settings, batch_twin)


def assert_equal_but_hard_deletes(settings: Settings) -> None:
    """What an incremental batch promises: nothing missing, changed or stale; only rows the
    source deleted may still be there (a batch sees deletes on --full-refresh)."""
    reconciliation = compare(settings)
    present = {r[0] for r in mysql_exec(settings.mysql_database,
                                        "SELECT transaction_id FROM transactions")}
    for diff in reconciliation.diffs:
        assert not (diff.missing or diff.changed or diff.stale), diff
        assert not set(diff.extra) & present, diff


def write(settings: Settings, seed: int, previous: Writer | None) -> Writer:
    writer = Writer(settings.mysql_database, seed=seed, transactions=80)
    if previous is not None:  # go on with the same rows, new ids
        writer.ids, writer.counter = previous.ids, previous.counter + 100_000
    writer.run()
    assert writer.error is None
    return writer


def total(settings: Settings) -> tuple[tuple[int, Decimal], tuple[int, Decimal]]:
    ((n, amount),) = mysql_exec(settings.mysql_database,
                                "SELECT count(*), sum(amount) FROM transactions")
    with opened(settings.warehouse) as wh:
        ((wn, wamount),) = wh.query("SELECT count(), sum(amount) FROM analytics_dw.v_fact_sales")
    return (int(n), Decimal(str(amount))), (int(wn), Decimal(str(wamount)))


def test_switching_between_batch_and_binlog_loses_and_doubles_nothing(settings):
    run_batch(settings)
    writer = write(settings, 11, None)
    run_batch(settings)  # batch loads for a while
    assert_equal_but_hard_deletes(settings)
    writer = write(settings, 12, writer)
    run_binlog(settings)  # switch to the binlog: its first run copies, sweeps, then follows
    assert compare(settings).ok
    writer = write(settings, 13, writer)
    run_binlog(settings)
    assert compare(settings).ok
    writer = write(settings, 14, writer)
    mysql_exec(settings.mysql_database, "DELETE FROM transactions ORDER BY transaction_id LIMIT 2")
    report = run_batch(settings)  # back to the batch: it sweeps what the stopped stream missed
    assert report.took_over_from == f"binlog:{settings.cdc_stream_name}"
    assert report.rows_deleted >= 2
    reconciliation = compare(settings)  # equal at the switch, hard deletes included
    assert reconciliation.ok, reconciliation
    writer = write(settings, 15, writer)
    run_binlog(settings)  # and to the binlog again: it resumes from its position
    reconciliation = compare(settings)
    assert reconciliation.ok, reconciliation
    source, warehouse = total(settings)
    assert warehouse == source
    with opened(settings.warehouse) as wh:  # the state says where each hand-off happened
        handed = store.handoffs(wh, 10)
        states = store.latest(wh)
    batch, stream = settings.pipeline_name, f"binlog:{settings.cdc_stream_name}"
    assert [(h["from"]["pipeline"], h["to"]["pipeline"]) for h in handed] == [
        (batch, stream), (stream, batch), (batch, stream)]
    assert set(handed[1]["from"]["cursor"]) == {"file", "pos", "server_id"}
    assert set(handed[0]["from"]["cursor"]) == {"watermark_us"}
    assert handed[0]["from"]["cursor"] == states[batch].cursor  # where the batch stopped
    assert {p: s.kind for p, s in states.items()} == {batch: "batch", stream: "binlog"}


def flat(op: str, key: str, version: int, **row) -> str:
    """A flat event; its `_version` is an ISO time with microseconds (`version` µs)."""
    at = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=version)
    return json.dumps({"op": op, "transaction_id": key, "_version": at.isoformat().replace(
        "+00:00", "Z"), **row})


def test_a_replay_of_flat_events_feeds_the_star_schema(settings):
    lines = [
        flat("insert", "R1", 1_736_500_000_000_000, user_id=1, merchant_id=2, amount="150000.00",
             status="SUCCESS", transaction_time="2025-01-10T10:00:00Z"),
        flat("insert", "R2", 1_736_500_000_000_000, user_id=2, merchant_id=1, amount="20.50",
             status="PENDING", transaction_time="2025-01-10T11:00:00Z"),
        flat("update", "R2", 1_736_500_000_000_500, user_id=2, merchant_id=1, amount="20.50",
             status="SUCCESS", transaction_time="2025-01-10T11:00:00Z"),
        flat("insert", "R3", 1_736_500_000_000_000, user_id=3, merchant_id=3, amount="99.00",
             status="SUCCESS", transaction_time="2025-01-11T09:00:00Z"),
        flat("delete", "R3", 1_736_500_000_000_900),
        flat("insert", "R4", 1_736_500_000_000_000, user_id=3, merchant_id=3, amount="1.00",
             status="SUCCESS", transaction_time="1999-12-31T23:00:00Z"),  # before 2000: refused
    ]
    report = run_replay(settings, io.StringIO("\n".join(lines)), "test", 100)
    facts = replayed_facts(settings)
    assert facts == [("R1", Decimal("150000.00"), "High", "SUCCESS", 1_736_500_000_000_000),
                     ("R2", Decimal("20.50"), "Low", "SUCCESS", 1_736_500_000_000_500)]
    assert report.reject_reasons == {"transaction_time before 2000-01-01": 1}
    run_replay(settings, io.StringIO("\n".join(lines)), "test", 1)  # again, one per batch
    assert replayed_facts(settings) == facts


def replayed_facts(settings: Settings) -> list[tuple]:
    with opened(settings.warehouse) as wh:
        rows = wh.query("SELECT transaction_id, toString(amount), amount_category, status, "
                        "_version FROM analytics_dw.fact_sales FINAL WHERE _deleted = 0 "
                        "ORDER BY transaction_id")
    return [(t, Decimal(a), c, s, int(v)) for t, a, c, s, v in rows]


@pytest.mark.parametrize("mode, micro, schemas", [
    ("precise", False, True), ("precise", True, False), ("string", False, True),
    ("double", True, True)])
def test_real_shaped_debezium_events_land_in_the_replica_and_the_star(settings, mode, micro,
                                                                       schemas):
    messages, final = history(mode=mode, micro=micro, schemas=schemas,
                              db=settings.mysql_database)
    report = run_replay(settings, io.StringIO("\n".join(messages)), "debezium", 100)
    assert (report.events_read, report.rejected, report.skipped) == (6, 0, 0)
    wanted = [(key, row.amount, row.status) for key, row in sorted(final.items())]
    with opened(settings.warehouse) as wh:
        replica = wh.query("SELECT transaction_id, toString(amount), status "
                           "FROM analytics_dw.v_cdc_transactions ORDER BY transaction_id")
        facts = wh.query("SELECT transaction_id, toString(amount), status, _version "
                         "FROM analytics_dw.fact_sales FINAL WHERE _deleted = 0 "
                         "ORDER BY transaction_id")
    assert [(k, Decimal(a), s) for k, a, s in replica] == wanted
    assert [(k, Decimal(a), s) for k, a, s, _ in facts] == wanted
    # the star's versions are the rows' updated_at, as a batch load of the source would make
    assert [int(v) for *_, v in facts] == [
        int(final[k].updated_at.timestamp()) * 1_000_000 + final[k].updated_at.microsecond
        for k, *_ in facts]


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc)  # read in a UTC session


def debezium_copy_of_the_source(db: str) -> list[str]:
    """The source's three tables as Debezium snapshot reads (precise decimals, schemas on):
    the transactions first, their users and merchants after them."""
    users = mysql_exec(db, "SELECT user_id, name, email, city, created_at, updated_at FROM users")
    merchants = mysql_exec(db, "SELECT merchant_id, name, category, city, created_at, "
                               "updated_at FROM merchants")
    transactions = mysql_exec(db, "SELECT transaction_id, user_id, merchant_id, amount, status, "
                                  "transaction_time, updated_at FROM transactions")
    messages = [event("r", None, Row(t, u, m, a, s, _as_utc(at), _as_utc(up)), 100 + i, db=db)
                for i, (t, u, m, a, s, at, up) in enumerate(transactions)]
    for table, rows, names in (("users", users, ("user_id", "name", "email", "city")),
                               ("merchants", merchants,
                                ("merchant_id", "name", "category", "city"))):
        for values in rows:
            row = dict(zip((*names, "created_at", "updated_at"), values, strict=True))
            row["created_at"], row["updated_at"] = (_as_utc(row["created_at"]),
                                                    _as_utc(row["updated_at"]))
            messages.append(dimension_event(table, row, 900 + len(messages), db=db))
    return messages


def test_a_debezium_file_of_the_three_tables_gives_the_star_a_batch_load_gives(settings,
                                                                             batch_twin):
    """Users and merchants events fill the dimensions (names, categories, cities), not only
    inferred members; facts that arrive before their users get the real members later."""
    messages = debezium_copy_of_the_source(settings.mysql_database)
    report = run_replay(settings, io.StringIO("\n".join(messages)), "debezium", 3)
    assert (report.rejected, report.skipped, report.events_read) == (0, 0, len(messages))
    assert_star_equals_a_batch_load(settings, batch_twin)
    with opened(settings.warehouse) as wh:
        names = wh.query("SELECT name FROM analytics_dw.v_cdc_users ORDER BY user_id")
    assert [n for (n,) in names] == [n for (n,) in mysql_exec(
        settings.mysql_database, "SELECT name FROM users ORDER BY user_id")]


def test_the_star_takes_changes_the_replica_refuses_for_their_version_scheme(settings,
                                                                           batch_twin):
    """A flat file claims the replica for microsecond versions; a later Debezium file (binlog
    positions) is refused by the replica, but the business tables still take its changes."""
    [(user, merchant, amount, status, at, updated)] = mysql_exec(
        settings.mysql_database, "SELECT user_id, merchant_id, amount, status, transaction_time, "
                                 "updated_at FROM transactions WHERE transaction_id = 'TX1003'")
    flat = json.dumps({"op": "insert", "transaction_id": "TX1003", "user_id": user,
                       "merchant_id": merchant, "amount": str(amount), "status": status,
                       "transaction_time": _as_utc(at).isoformat(),
                       "_version": _as_utc(updated).isoformat()})
    run_replay(settings, io.StringIO(flat), "flat", 100)
    mysql_exec(settings.mysql_database, "UPDATE transactions SET amount = amount + 1, "
                                        "status = 'REFUNDED' WHERE transaction_id = 'TX1001'")
    messages = debezium_copy_of_the_source(settings.mysql_database)
    report = run_replay(settings, io.StringIO("\n".join(messages)), "debezium", 100)
    assert report.rejected == len(messages)  # every one refused by the replica, with its reason
    assert set(report.reject_reasons) == {next(iter(report.reject_reasons))}
    assert_star_equals_a_batch_load(settings, batch_twin)


def test_schema_changes_in_the_stream_keep_the_star_right_or_quarantine_with_a_reason(
        settings, batch_twin):
    db = settings.mysql_database
    run_binlog(settings)
    mysql_exec(db, "ALTER TABLE transactions ADD COLUMN channel VARCHAR(20) NULL")
    mysql_exec(db, "ALTER TABLE transactions MODIFY amount DECIMAL(14, 2) NOT NULL")
    mysql_exec(db, "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, "
                   "status, transaction_time, channel) VALUES ('TXWIDE', 1, 2, 987654321.50, "
                   "'SUCCESS', '2025-01-12 12:00:00', 'app')")
    report = run_binlog(settings)
    assert report.apply.rejected == 0
    assert_star_equals_a_batch_load(settings, batch_twin)  # added and widened: still right

    mysql_exec(db, "ALTER TABLE transactions CHANGE status state VARCHAR(10) NOT NULL")
    mysql_exec(db, "UPDATE transactions SET amount = amount + 1 WHERE transaction_id = 'TX1008'")
    with pytest.raises(ColumnsMissing) as stopped:  # never applied half-right, never dropped
        run_binlog(settings)
    assert "no column status" in str(stopped.value) and "--resnapshot" in str(stopped.value)
    assert binlog_main(settings) == 2  # the command's exit code: fix something, then rerun
    with opened(settings.warehouse) as wh:  # the change waits: the old amount is still there
        assert wh.query("SELECT toString(amount) FROM analytics_dw.v_fact_sales "
                        "WHERE transaction_id = 'TX1008'") != []
    mysql_exec(db, "ALTER TABLE transactions CHANGE state status VARCHAR(16) NOT NULL")
    run_binlog(settings, resnapshot=True)
    assert_star_equals_a_batch_load(settings, batch_twin)
