"""Unit tests of the CDC replay's pure parts: formats, framing, versions, validation (a corpus of
malformed events), the reducer (with a property test), Arrow rows and the command line."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ewallet_etl.cdc_cli import build_parser, cdc_main
from ewallet_etl.core.changes import Change, reduce_changes, rejects_table, to_arrow, to_change
from ewallet_etl.core.events import (
    BadEvent,
    ChangeEvent,
    Op,
    Reject,
    binlog_version,
    parse_record,
    read_events,
)
from ewallet_etl.pipelines.replay import CdcReport

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "cdc_events.json"
GOOD = {"op": "insert", "transaction_id": "TX1001", "user_id": 1, "merchant_id": 1,
        "amount": "50000.00", "status": "PENDING", "transaction_time": "2025-01-10T08:15:00Z",
        "_version": "2025-01-10T08:15:00.120000Z"}


def items(text: str, chunk_chars: int = 1 << 20) -> list:
    return list(read_events(io.StringIO(text), chunk_chars))


def line(**changes) -> str:
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...})


def refusal(text: str) -> str:
    """The reason one record is refused ('' if it is accepted)."""
    [item] = items(text)
    if isinstance(item, Reject):
        return item.reason
    try:
        to_change(item)
    except BadEvent as exc:
        return str(exc)
    return ""


def summary(parsed: list) -> list[tuple]:
    return [(type(i).__name__, i.key, i.version,
             i.op.value if isinstance(i, ChangeEvent) else i.reason) for i in parsed]


# --- flat events, versions ----------------------------------------------------------------------

def test_flat_insert_becomes_one_exact_change():
    [event] = items(line())
    assert (event.op, event.table, event.key) == (Op.INSERT, "transactions", "TX1001")
    assert event.version == 1736496900120000
    change = to_change(event)
    assert (change.user_id, change.merchant_id, change.status) == (1, 1, "PENDING")
    assert change.amount == Decimal("50000.00") and isinstance(change.amount, Decimal)
    assert change.transaction_time == 1736496900 and change.deleted == 0


def test_two_changes_in_one_second_do_not_tie():
    a, b = items(line(_version="2025-01-10T08:15:00.120000Z") + "\n"
                 + line(_version="2025-01-10T08:15:00.120001Z"))
    assert b.version - a.version == 1


@pytest.mark.parametrize("text", ["2025-01-10T08:15:00.5Z", "2025-01-10T08:15:00.500000+00:00",
                                  "2025-01-10T15:15:00.5+07:00", "2025-01-10 08:15:00.500Z"])
def test_version_offsets_name_the_same_instant(text):
    [event] = items(line(_version=text))
    assert event.version == 1736496900500000


@pytest.mark.parametrize("amount, expected", [
    ("0.01", "0.01"), ("49999.99", "49999.99"), (12345, "12345"), ("9999999999999999.99",
                                                                    "9999999999999999.99"),
])
def test_amounts_stay_exact(amount, expected):
    assert to_change(items(line(amount=amount))[0]).amount == Decimal(expected)


def test_json_number_amounts_never_pass_through_float():
    text = line().replace('"50000.00"', "0.1")
    assert to_change(items(text)[0]).amount == Decimal("0.1")
    text = line().replace('"50000.00"', "100000.00")
    assert str(to_change(items(text)[0]).amount) == "100000.00"


def test_delete_needs_only_key_and_version():
    [event] = items(json.dumps({"op": "delete", "transaction_id": "TX1002",
                                "_version": "2025-01-10T09:30:00Z"}))
    change = to_change(event)
    assert (change.deleted, change.key, change.version) == (1, "TX1002", 1736501400000000)


def test_fractions_of_a_second_are_floored_as_the_batch_floors_them():
    """A transaction_time column widened to DATETIME(6): the stream keeps the same second as
    the batch load (the warehouse's DateTime), it does not refuse the row."""
    from ewallet_etl.core import transform

    moment = datetime(2025, 1, 10, 8, 15, 0, 999_999)
    event = ChangeEvent(Op.UPDATE, "transactions", "TX9", {
        "transaction_id": "TX9", "user_id": 2, "merchant_id": 3, "amount": Decimal("10.50"),
        "status": "SUCCESS", "transaction_time": moment}, 7)
    [text_event] = items(line(transaction_time="2025-01-10T08:15:00.999999Z"))
    batch = transform.decode_times(pa.table({"transaction_time": pa.array(
        [Decimal("20250110081500.999999")], pa.decimal128(20, 6))}))
    batch_seconds = transform._epoch_seconds(batch.column("transaction_time"))
    assert to_change(event).transaction_time == 1736496900
    assert to_change(text_event).transaction_time == 1736496900
    assert batch_seconds.tolist() == [1736496900]


def test_binlog_rows_are_accepted_as_python_values():
    event = ChangeEvent(Op.UPDATE, "transactions", "TX9", {
        "transaction_id": "TX9", "user_id": 2, "merchant_id": 3, "amount": Decimal("10.50"),
        "status": "SUCCESS", "transaction_time": datetime(2025, 1, 10, 8, 15)}, 7)
    change = to_change(event)
    assert (change.transaction_time, change.amount, change.version) == (
        1736496900, Decimal("10.50"), 7)


# --- the malformation corpus --------------------------------------------------------------------

MISSING = ...
MALFORMED = [
    ("not json at all", "not JSON"),
    ('{"op": "insert", "transaction_id": "TX1"', "not JSON"),
    ("42", "not a JSON object"),
    ('"a string"', "not a JSON object"),
    (line(op=MISSING), "missing op"),
    (line(op="upsert"), "unknown op"),
    (line(op=1), "unknown op"),
    (line(transaction_id=MISSING), "missing transaction_id"),
    (line(transaction_id=1001), "transaction_id is not a string"),
    (line(transaction_id=""), "transaction_id is empty, too long or has invalid characters"),
    (line(transaction_id="T" * 65), "transaction_id is empty, too long or has invalid characters"),
    (line(transaction_id="TX\n1"), "transaction_id is empty, too long or has invalid characters"),
    (line(_version=MISSING), "missing _version"),
    (line(_version="yesterday"), "_version is not an ISO-8601 time"),
    (line(_version="2025-01-10T08:15:00.120000"), "_version has no UTC offset"),
    (line(_version=1736496900120000), "_version is not an ISO-8601 text"),
    (line(_version="1969-12-31T23:59:59Z"), "_version is before 1970"),
    (line(amount=MISSING), "missing amount"),
    (line(amount="12.500,00"), "amount is not a decimal number"),
    (line(amount="1e5"), "amount is not a decimal number"),
    (line(amount=" 12.00"), "amount is not a decimal number"),
    (line(amount=True), "amount is not a decimal number"),
    (line().replace('"50000.00"', "NaN"), "amount is not a decimal number"),
    (line().replace('"50000.00"', "Infinity"), "amount is not a decimal number"),
    (line(amount="-5.00"), "amount is negative"),
    (line(amount="10000000000000000.00"), "amount exceeds Decimal(18, 2)"),
    (line(amount="1.005"), "amount has more than 2 decimals"),
    (line().replace('"50000.00"', "0.001"), "amount has more than 2 decimals"),
    (line(user_id=-1), "user_id out of range (0..4294967295)"),
    (line(user_id=4294967296), "user_id out of range (0..4294967295)"),
    (line(user_id="1"), "user_id is not an integer"),
    (line(merchant_id=1.5), "merchant_id is not an integer"),
    (line(merchant_id=MISSING), "missing merchant_id"),
    (line(status="SETTLED"), "unknown status"),
    (line(status="success"), "unknown status"),
    (line(status=None), "missing status"),
    (line(transaction_time="2025-02-30T10:00:00Z"), "transaction_time is not an ISO-8601 time"),
    (line(transaction_time="2025-01-10T08:15:00"), "transaction_time has no UTC offset"),
    (line(transaction_time="1969-12-31T23:59:59Z"),
     "transaction_time outside DateTime range (1970-01-01..2106-02-07)"),
    (line(transaction_time="2106-02-07T06:28:16Z"),
     "transaction_time outside DateTime range (1970-01-01..2106-02-07)"),
    (line(transaction_time=1736496900), "transaction_time is not an ISO-8601 text"),
    (line(table="users"), "table is not replicated"),
    ('{"op": "t", "before": null, "after": null, "source": {"ts_ms": 1}}',
     "unknown Debezium op"),
    ('{"op": "d", "before": null, "after": null, "source": {"ts_ms": 1}}',
     "Debezium event without its row image"),
    ('{"op": "c", "after": {"transaction_id": "TX1"}, "source": {}}',
     "Debezium event without a source position or timestamp"),
    ('{"op": "c", "after": {"transaction_id": "TX1"}, "source": {"file": "binlog.070000", '
     '"pos": 4}}', "binlog position out of range"),
]


@pytest.mark.parametrize("text, reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_events_are_refused_with_their_reason(text, reason):
    assert refusal(text) == reason


def test_corpus_covers_many_distinct_malformations():
    assert len({reason for _, reason in MALFORMED}) >= 15
    assert refusal(line()) == ""


def test_a_reject_keeps_key_version_and_raw_text():
    text = line(status="SETTLED")
    [event] = items(text)
    with pytest.raises(BadEvent):
        to_change(event)
    assert event.raw == text
    [reject] = items(line(op="upsert"))
    assert (reject.key, reject.version, reject.raw) == ("TX1001", 1736496900120000,
                                                        line(op="upsert"))


def test_bytes_that_are_not_utf8_are_refused_not_rewritten():
    raw = line(transaction_id="TX\udcff1")  # what errors="surrogateescape" makes of 0xff
    assert refusal(raw) == "transaction_id is empty, too long or has invalid characters"
    table = rejects_table([Reject("", 0, "x", raw)])
    assert "\\udcff" in table.column("raw")[0].as_py()


def test_quarantine_keys_tell_records_apart_but_not_replays():
    a, b = Reject("TX1", 5, "r", "one"), Reject("TX1", 5, "r", "two")
    keys = rejects_table([a, b, a]).column("record_key").to_pylist()
    assert keys[0] != keys[1] and keys[0] == keys[2] and keys[0].startswith("TX1#")


# --- framing: JSON array, JSON Lines ------------------------------------------------------------

def test_sample_file_parses_with_the_expected_mix():
    parsed = items(SAMPLE.read_text())
    assert len(parsed) >= 30
    assert {i.op for i in parsed if isinstance(i, ChangeEvent)} == set(Op)
    # refused while parsing: unknown op, missing _version; the other four when validated
    assert sum(isinstance(i, Reject) for i in parsed) == 2


@pytest.mark.parametrize("chunk_chars", [1, 2, 3, 7, 64, 4096])
def test_array_splitter_is_independent_of_chunk_boundaries(chunk_chars):
    text = SAMPLE.read_text()
    assert summary(items(text, chunk_chars)) == summary(items(text))


def test_json_lines_and_array_give_the_same_events():
    array = json.loads(SAMPLE.read_text())
    lines = "\r\n\n".join(json.dumps(e) for e in array) + "\n\n"
    assert summary(items(lines)) == summary(items(SAMPLE.read_text()))
    assert summary(items(lines, 5)) == summary(items(lines))


@pytest.mark.parametrize("chunk_chars", [1, 5, 1 << 20])
def test_array_resyncs_after_a_broken_element(chunk_chars):
    broken = '{"op": "insert", "amount": 1..2, "x": "a,]"}'  # a `,]` inside a string
    text = f'[{line()}, {broken}, {line(_version="2025-01-10T08:16:00Z")}]'
    kinds = summary(items(text, chunk_chars))
    assert [k[0] for k in kinds] == ["ChangeEvent", "Reject", "ChangeEvent"]
    assert kinds[1][3] == "not JSON"
    assert items(text, chunk_chars)[1].raw == broken


@pytest.mark.parametrize("text, expected", [
    ("", []),
    ("  \n ", []),
    ("[]", []),
    ("\ufeff[ ]\n", []),
    (f"[{line()}", ["insert", "JSON array not closed (truncated input?)"]),
    (f"[{line()}, {{\"op\": \"ins", ["insert", "not JSON",
                                     "JSON array not closed (truncated input?)"]),
    (f"[{line()} {line()}]", ["insert", "missing ',' between array elements"]),
    (f"[{line()},]", ["insert", "empty array element"]),
    (f"[{line()}] junk", ["insert", "data after the JSON array"]),
    ("[null, {\"payload\": null}]", []),
    ("null\n{\"payload\": null}\n", []),
    ("[1234567]", ["not a JSON object"]),
])
def test_array_edge_cases(text, expected):
    for chunk_chars in (1, 3, 1 << 20):
        assert [k[3] for k in summary(items(text, chunk_chars))] == expected


def test_a_number_cut_by_a_chunk_is_not_shortened():
    [reject] = items("[1234567]", 3)
    assert reject.raw == "1234567"


# --- Debezium -----------------------------------------------------------------------------------

def debezium(op: str, before: dict | None, after: dict | None, **source) -> str:
    return json.dumps({"before": before, "after": after, "op": op, "ts_ms": 1,
                       "source": {"connector": "mysql", "table": "transactions", **source}})


ROW = {"transaction_id": "TX1001", "user_id": 1, "merchant_id": 1, "amount": "50000.00",
       "status": "SUCCESS", "transaction_time": 1736496900000}


@pytest.mark.parametrize("op, expected", [("c", Op.INSERT), ("r", Op.INSERT), ("u", Op.UPDATE),
                                          ("d", Op.DELETE)])
def test_debezium_ops(op, expected):
    text = debezium(op, ROW if op in "ud" else None, None if op == "d" else ROW,
                    file="mysql-bin.000003", pos=1234, row=2)
    [event] = items(text)
    assert (event.op, event.key) == (expected, "TX1001")
    assert event.version == binlog_version("mysql-bin.000003", 1234, 2)
    change = to_change(event)
    assert change.deleted == (op == "d")
    if op != "d":
        assert (change.transaction_time, change.amount) == (1736496900, Decimal("50000.00"))


def test_debezium_payload_wrapper_and_lines():
    inner = json.loads(debezium("c", None, ROW, ts_us=1736496900123456))
    text = json.dumps({"schema": {}, "payload": inner}) + "\n" + json.dumps({"payload": inner})
    parsed = items(text)
    assert [e.version for e in parsed] == [1736496900123456] * 2


@pytest.mark.parametrize("source, version", [
    ({"ts_us": 1736496900123456}, 1736496900123456),
    ({"ts_ns": 1736496900123456789}, 1736496900123456),
    ({"ts_ms": 1736496900123}, 1736496900123000),
    ({"ts_ms": 1736496900123, "file": "binlog.000002", "pos": 77}, (2 << 32 | 77) << 16),
])
def test_debezium_versions(source, version):
    assert items(debezium("c", None, ROW, **source))[0].version == version


@pytest.mark.parametrize("earlier, later", [
    (("binlog.000001", 500, 0), ("binlog.000001", 500, 1)),
    (("binlog.000001", 500, 65535), ("binlog.000001", 501, 0)),
    (("binlog.000001", 2**32 - 1, 9), ("binlog.000002", 4, 0)),
    (("binlog.000009", 10, 0), ("binlog.000010", 4, 0)),
])
def test_binlog_versions_follow_the_binlog_order(earlier, later):
    assert binlog_version(*earlier) < binlog_version(*later)


def test_binlog_version_layout_matches_the_live_reader():
    state = pytest.importorskip("ewallet_etl.core.binlog_position")
    position = state.Position.of("binlog.000042", 123456)
    assert binlog_version("binlog.000042", 123456, 7) == state.version(position, 7)


# --- the reducer --------------------------------------------------------------------------------

def change(key: str, version: int, status: str = "SUCCESS", deleted: int = 0,
           amount: str = "1.00") -> Change:
    event = ChangeEvent(Op.DELETE if deleted else Op.UPDATE, "transactions", key, {}, version)
    return Change(key, version, deleted, 1, 1, Decimal(amount), "" if deleted else status,
                  0, event)


def state(rows: list[Change]) -> dict[str, tuple]:
    return {r.key: r.content() for r in rows}


def test_reducer_keeps_the_latest_version_of_each_key():
    out = reduce_changes([change("A", 2, "SUCCESS"), change("A", 1, "PENDING"),
                          change("B", 1), change("A", 2, "SUCCESS"), change("B", 3, deleted=1)])
    assert state(out.rows) == {"A": change("A", 2).content(),
                               "B": change("B", 3, deleted=1).content()}
    assert (out.conflicts, out.collapsed) == ([], 3)


def test_equal_versions_with_different_content_are_refused():
    out = reduce_changes([change("A", 1, "PENDING"), change("A", 2, "SUCCESS"),
                          change("A", 2, "FAILED"), change("A", 2, "SUCCESS")])
    assert state(out.rows) == {"A": change("A", 1, "PENDING").content()}
    assert sorted(c.status for c in out.conflicts) == ["FAILED", "SUCCESS"]
    assert out.collapsed == 1


def test_a_conflict_below_the_latest_version_changes_nothing():
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        events = [change("A", 1, "PENDING"), change("A", 1, "FAILED"), change("A", 5)]
        out = reduce_changes([events[i] for i in order])
        assert state(out.rows) == {"A": change("A", 5).content()} and out.conflicts == []


def test_a_key_whose_every_version_conflicts_is_left_out():
    out = reduce_changes([change("A", 1, "PENDING"), change("A", 1, "FAILED")])
    assert out.rows == [] and len(out.conflicts) == 2


histories = st.dictionaries(
    st.sampled_from("ABCDEFGH"),
    st.lists(st.tuples(st.integers(1, 40), st.sampled_from(["SUCCESS", "PENDING", "FAILED", "D"])),
             min_size=1, max_size=6, unique_by=lambda t: t[0]),
    min_size=1, max_size=8)


def flatten(history: dict) -> list[Change]:
    return [change(key, version, status if status != "D" else "", int(status == "D"))
            for key, versions in history.items() for version, status in versions]


def expected_state(history: dict) -> dict[str, tuple]:
    return state([max((c for c in flatten(history) if c.key == key), key=lambda c: c.version)
                  for key in history])


@hsettings(max_examples=300, deadline=None)
@given(histories, st.randoms(use_true_random=False), st.integers(1, 10))
def test_reduce_then_replacing_merge_is_order_and_split_proof(history, rnd, batch):
    events = flatten(history)
    events = events + rnd.sample(events, rnd.randint(0, len(events)))  # duplicates
    rnd.shuffle(events)
    table: dict[str, Change] = {}  # ReplacingMergeTree: the highest version of a key wins
    for start in range(0, len(events), batch):
        out = reduce_changes(events[start:start + batch])
        assert out.conflicts == [] and len({r.key for r in out.rows}) == len(out.rows)
        for row in out.rows:
            if row.key not in table or row.version > table[row.key].version:
                table[row.key] = row
    assert state(list(table.values())) == expected_state(history)


def test_to_arrow_builds_typed_columns():
    rows = [change("A", 3, amount="9999999999999999.99"), change("B", 4, deleted=1, amount="0")]
    table = to_arrow(rows)
    assert table.schema.field("amount").type == pa.decimal128(18, 2)
    assert table.schema.field("_version").type == pa.uint64()
    assert table.column("amount").to_pylist() == [Decimal("9999999999999999.99"), Decimal("0")]
    assert table.column("amount_category").to_pylist() == ["High", ""]
    assert table.column("_deleted").to_pylist() == [0, 1]
    assert table.column("transaction_time").type == pa.timestamp("s", tz="UTC")


# --- command line -------------------------------------------------------------------------------

def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for flag in ("--batch-size", "--optimize", "--source", "FILE", "--reset-replica",
                 "--source-db"):
        assert flag in out


def test_reset_and_source_db_flags():
    args = build_parser().parse_args(["--reset-replica", "--source-db", "shop"])
    assert (args.reset_replica, args.source_db) == (True, "shop")
    assert build_parser().parse_args([]).source_db is None


def test_summary_counts_skipped_events():
    report = CdcReport(run_id="r", started_at=datetime(2025, 1, 1), events_read=5, skipped=2)
    assert "read=5 " in report.summary() and " skipped=2 " in report.summary()


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--batch-size", "x"],
                                  ["--source", "kafka"], ["--follow"], ["a", "b"],
                                  ["--source-db", ""]])
def test_bad_usage_exits_2(argv):
    with pytest.raises(SystemExit) as exit_:
        cdc_main(argv)
    assert exit_.value.code == 2


def test_defaults():
    args = build_parser().parse_args([])
    assert (args.input, args.source, args.optimize) == (None, "file", False)  # the sample
    assert 10_000 <= args.batch_size <= 50_000


def test_the_packaged_sample_is_the_repository_s_cdc_events_json():
    from ewallet_etl.cdc_cli import sample_path

    assert Path(sample_path()).read_bytes() == SAMPLE.read_bytes()


def test_an_unreadable_input_is_a_usage_error(tmp_path):
    assert cdc_main([str(tmp_path / "missing.json")]) == 2


def test_parse_record_tolerates_deep_nesting():
    assert parse_record("[" * 100_000).reason == "not JSON"


def test_random_sample_orders_parse_identically():
    array = json.loads(SAMPLE.read_text())
    shuffled = random.Random(7).sample(array, len(array))
    lines = "\n".join(json.dumps(e) for e in shuffled)
    assert sorted(summary(items(lines))) == sorted(summary(items(SAMPLE.read_text())))
    assert all(isinstance(e.version, int) for e in items(lines) if isinstance(e, ChangeEvent))
