"""Unit tests of the version-scheme and origin rules (ewallet_etl/version_scheme.py, pure):
which scheme an event's version is in, whether a replica's claim admits it, and which
Debezium events belong to another database or table."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pytest

from ewallet_etl.core.events import ChangeEvent, Reject, Skipped, binlog_version, read_events
from ewallet_etl.core.version_scheme import (
    Scheme,
    debezium_scheme,
    is_foreign,
    origin_label,
    parse_scheme,
    refusal,
    start_refusal,
)

FLAT = {"op": "insert", "transaction_id": "TX1", "user_id": 1, "merchant_id": 1,
        "amount": "1.00", "status": "SUCCESS", "transaction_time": "2025-01-10T08:15:00Z",
        "_version": "2025-01-10T08:15:00.120000Z"}
ROW = {k: v for k, v in FLAT.items() if k not in ("op", "_version")}


def debezium(after: dict | None = None, **source) -> str:
    return json.dumps({"before": None, "after": ROW if after is None else after, "op": "c",
                       "source": {"connector": "mysql", **source}})


def parsed(text: str, database: str | None = None) -> list:
    return list(read_events(io.StringIO(text), database=database))


# --- which scheme an event's version is in ------------------------------------------------------

@pytest.mark.parametrize("source, scheme", [
    ({"file": "mysql-bin.000003", "pos": 4512}, Scheme.BINLOG),
    ({"file": "mysql-bin.000003", "pos": 4512, "row": 2, "ts_ms": 1}, Scheme.BINLOG),
    ({"ts_us": 1736496900123456}, Scheme.MICROS),
    ({"ts_ns": 1736496900123456789}, Scheme.MICROS),
    ({"ts_ms": 1736496900123}, Scheme.MICROS),
    ({"file": "", "pos": 4, "ts_ms": 1}, Scheme.MICROS),  # no usable position: the time
    ({"file": "mysql-bin.000003", "pos": "4", "ts_ms": 1}, Scheme.MICROS),
])
def test_debezium_scheme_follows_the_version_it_gets(source, scheme):
    assert debezium_scheme(source) is scheme
    [event] = parsed(debezium(**source))
    assert event.scheme is scheme


def test_flat_events_are_microsecond_versions():
    [event] = parsed(json.dumps(FLAT))
    assert event.scheme is Scheme.MICROS


def test_version_sizes_overlap_so_a_table_scheme_cannot_be_inferred_from_them():
    """Why a table without a claim is refused, not guessed: a binlog position of file
    .000006 is, as a number, a microsecond time of 2023."""
    moment = datetime.fromtimestamp(binlog_version("binlog.000006", 4) / 1e6, timezone.utc)
    assert moment.year == 2023
    assert binlog_version("binlog.000001", 4) < 2**48 + 2**20  # ~1978 in microseconds


# --- whether a claim admits an event -------------------------------------------------------------

@pytest.mark.parametrize("claimed, scheme", [
    (None, Scheme.MICROS), (None, Scheme.BINLOG),
    (Scheme.MICROS, Scheme.MICROS), (Scheme.BINLOG, Scheme.BINLOG),
])
def test_a_claim_admits_its_own_scheme_and_an_unclaimed_table_admits_any(claimed, scheme):
    assert refusal("cdc_transactions", claimed, scheme) is None
    assert start_refusal("cdc_transactions", claimed, scheme) is None


def test_the_other_scheme_is_refused_with_a_reason_that_names_both_and_the_reset():
    assert refusal("cdc_transactions", Scheme.MICROS, Scheme.BINLOG) == (
        "version scheme binlog-position does not match cdc_transactions (fed by microsecond "
        "versions); see README: reset")
    assert refusal("cdc_transactions", Scheme.BINLOG, Scheme.MICROS) == (
        "version scheme microsecond does not match cdc_transactions (fed by binlog-position "
        "versions); see README: reset")


def test_an_event_that_states_no_scheme_is_refused():
    assert "does not state its version scheme" in refusal("cdc_transactions", None, None)


def test_a_refused_run_says_how_to_reset():
    problem = start_refusal("cdc_transactions", Scheme.MICROS, Scheme.BINLOG)
    assert "microsecond" in problem and "binlog-position" in problem
    assert "cdc-stream.py --reset-replica" in problem


@pytest.mark.parametrize("text, scheme", [("micros", Scheme.MICROS), ("binlog", Scheme.BINLOG)])
def test_claims_round_trip_as_text(text, scheme):
    assert parse_scheme(text) is scheme and scheme.value == text


@pytest.mark.parametrize("text", ["", "MICROS", "gtid"])
def test_an_unknown_claim_is_an_error(text):
    with pytest.raises(ValueError):
        parse_scheme(text)


# --- events of another database or table ----------------------------------------------------------

@pytest.mark.parametrize("db, table, foreign", [
    (None, "transactions", False),
    ("ewallet_source", "transactions", False),
    ("other_db", "transactions", True),
    ("ewallet_source", "users", False),  # the dimensions' events feed dim_users, dim_merchants
    (None, "merchants", False),
    ("ewallet_source", "orders", True),
    ("other_db", "users", True),
    ("EWALLET_SOURCE", "transactions", True),  # names are compared exactly, as the binlog does
])
def test_is_foreign(db, table, foreign):
    assert is_foreign(db, table, "ewallet_source") is foreign


def test_without_a_configured_database_only_the_table_counts():
    assert is_foreign("other_db", "transactions", None) is False
    assert is_foreign("other_db", "users", None) is False
    assert is_foreign("other_db", "orders", None) is True


def test_origin_label():
    assert origin_label("other_db", "transactions") == "other_db.transactions"
    assert origin_label(None, "users") == "?.users"


def test_debezium_events_of_other_tables_and_databases_are_skipped_not_refused():
    user = {"user_id": 7, "name": "Andi"}
    order = {"order_id": 7}  # no transaction_id: would be refused if parsed
    text = "\n".join([
        debezium(db="ewallet_source", table="transactions", ts_ms=1),
        debezium(db="other_db", table="transactions", ts_ms=1),
        debezium(user, db="ewallet_source", table="users", ts_ms=1),  # ours: dim_users
        debezium(table="transactions", ts_ms=1),  # no db named: the configured one
        debezium(order, db="ewallet_source", table="orders", ts_ms=1),
        json.dumps({"before": None, "after": order, "op": "t",
                    "source": {"db": "ewallet_source", "table": "orders"}}),
        debezium(user, db="other_db", table="users", ts_ms=1),
    ])
    items = parsed(text, "ewallet_source")
    assert [type(i) for i in items] == [ChangeEvent, Skipped, ChangeEvent, ChangeEvent, Skipped,
                                        Skipped, Skipped]
    assert (items[2].table, items[2].key) == ("users", "7")
    skipped = [i.label for i in items if isinstance(i, Skipped)]
    assert skipped == ["other_db.transactions", "ewallet_source.orders", "ewallet_source.orders",
                       "other_db.users"]


def test_flat_events_have_no_origin_and_are_never_skipped():
    text = json.dumps(FLAT) + "\n" + json.dumps({**FLAT, "table": "users"})
    kinds = [type(i) for i in parsed(text, "ewallet_source")]
    assert kinds == [ChangeEvent, Reject]  # the flat format carries transactions only


def test_a_debezium_source_that_is_not_an_object_is_still_refused():
    text = json.dumps({"before": None, "after": ROW, "op": "c", "source": "x"})
    [item] = parsed(text, "ewallet_source")
    assert isinstance(item, Reject) and item.reason == "Debezium source is not an object"


# --- the replay's gate (cdc.SchemeGate), with the claim recorded in a list ------------------------

def test_the_first_event_with_a_usable_version_claims_and_the_other_scheme_is_refused():
    """An event refused before its version could be used (another table) decides nothing; one
    whose row is refused (BadRow) does: its version is written, as a retraction."""
    from ewallet_etl.core.changes import SchemeGate, to_change
    from ewallet_etl.core.events import BadEvent, BadRow

    claims: list[Scheme] = []
    gate = SchemeGate(None, claims.append)
    other_table, bad_binlog, binlog, flat = parsed("\n".join([
        json.dumps({**FLAT, "table": "users"}),
        debezium({**ROW, "status": "SETTLED"}, file="binlog.000001", pos=4),
        debezium(file="binlog.000001", pos=8),
        json.dumps(FLAT),
    ]))
    assert isinstance(other_table, Reject) and other_table.reason == "table is not replicated"
    assert claims == []  # refused while parsing: it never reaches the gate
    with pytest.raises(BadRow, match="unknown status"):
        gate.admit(bad_binlog)
    assert claims == [Scheme.BINLOG]
    assert gate.admit(binlog) == to_change(binlog)
    with pytest.raises(BadEvent, match="version scheme micro"):
        gate.admit(flat)
    assert claims == [Scheme.BINLOG]  # claimed once


def test_a_claimed_gate_never_claims_again():
    from ewallet_etl.core.changes import SchemeGate

    claims: list[Scheme] = []
    gate = SchemeGate(Scheme.BINLOG, claims.append)
    [event] = parsed(debezium(file="binlog.000001", pos=8))
    gate.admit(event)
    assert claims == []


def test_skip_counts_are_kept_per_origin_and_bounded():
    from ewallet_etl.pipelines.replay import MAX_ORIGINS, CdcReport

    report = CdcReport(run_id="r", started_at=datetime.now(timezone.utc))
    for i in range(MAX_ORIGINS + 50):
        report.skip(Skipped("db", f"t{i}"))
    report.skip(Skipped("db", "t0"))
    assert (report.skipped, report.events_read) == (MAX_ORIGINS + 51, MAX_ORIGINS + 51)
    assert len(report.skipped_origins) == MAX_ORIGINS + 1
    assert report.skipped_origins["db.t0"] == 2
    assert report.skipped_origins["(other origins)"] == 50
