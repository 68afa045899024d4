"""Debezium events as Kafka Connect's JSON converter really writes them (tests/debezium_shapes.py):
every default type decodes exactly, in each decimal mode, with schemas on and off."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ewallet_etl.core.changes import to_change
from ewallet_etl.core.debezium import DecodeError, decimal_from_bytes
from ewallet_etl.core.events import ChangeEvent, Op, Reject, Skipped, parse_record
from tests.debezium_shapes import DECIMAL_MODES, history, precise


@pytest.mark.parametrize("amount", ["0.01", "0.00", "49999.99", "50000.00", "1234567.89",
                                    "99999999.99", "-5.00", "-0.01", "1.28", "-1.28", "327.67"])
def test_precise_decimals_round_trip_exactly(amount):
    assert decimal_from_bytes(precise(Decimal(amount)), 2, "amount") == Decimal(amount)


def test_bytes_are_twos_complement_big_endian():
    assert precise(Decimal("50000.00")) == "TEtA"  # 5000000 = 0x4C4B40
    assert decimal_from_bytes("/w==", 2, "amount") == Decimal("-0.01")  # 0xFF
    assert decimal_from_bytes("AP8=", 2, "amount") == Decimal("2.55")  # 0x00FF
    with pytest.raises(DecodeError, match="not a decimal number or a base64"):
        decimal_from_bytes("not base64!", 2, "amount")


@pytest.mark.parametrize("schemas", [True, False])
@pytest.mark.parametrize("micro", [False, True])
@pytest.mark.parametrize("mode", DECIMAL_MODES)
def test_every_default_shape_gives_the_source_values(mode, micro, schemas):
    messages, final = history(mode=mode, micro=micro, schemas=schemas)
    items = [parse_record(m, "ewallet_source") for m in messages]
    assert items[-1] is None  # the Kafka tombstone after the delete
    events = [i for i in items if i is not None]
    assert all(isinstance(e, ChangeEvent) for e in events), events
    assert [e.op for e in events] == [Op.INSERT, Op.INSERT, Op.INSERT, Op.UPDATE, Op.UPDATE,
                                      Op.DELETE]
    last = {e.key: to_change(e) for e in events}
    for key, row in final.items():
        change = last[key]
        assert (change.amount, change.status, change.user_id) == (
            row.amount, row.status, row.user_id)
        assert change.transaction_time == int(row.transaction_time.timestamp())
    assert last["DBZ3"].deleted == 1
    updated = events[4].row["updated_at"]
    assert datetime.fromisoformat(updated) == datetime(2025, 3, 1, 9, 0, 2, 120000,
                                                       tzinfo=timezone.utc)


def test_a_double_with_more_digits_than_a_double_keeps_is_refused():
    messages, _ = history(mode="double")
    envelope = json.loads(messages[2])
    envelope["payload"]["after"]["amount"] = 12345678901234.56  # 16 significant digits
    text = json.dumps(envelope)
    item = parse_record(text, "ewallet_source")
    assert isinstance(item, Reject) and "more than 15 significant digits" in item.reason
    envelope["payload"]["after"]["amount"] = 1234567890123.45  # 15: exact through a double
    event = parse_record(json.dumps(envelope), "ewallet_source")
    assert isinstance(event, ChangeEvent)
    assert event.row["amount"] == Decimal("1234567890123.45")


def test_without_a_schema_a_base64_amount_is_read_at_the_source_scale():
    messages, _ = history(mode="precise", schemas=False)
    event = parse_record(messages[0], "ewallet_source")
    assert isinstance(event, ChangeEvent) and event.row["amount"] == Decimal("50000.00")
    assert event.row["transaction_time"] == datetime(2025, 1, 10, 8, 15, tzinfo=timezone.utc)


@pytest.mark.parametrize("amount, expected", [
    ("1234.50", Decimal("1234.50")),  # string mode: the column's scale after a point
    (precise(Decimal("26.00")), Decimal("26.00")),  # precise mode: base64 of the unscaled value
])
def test_without_a_schema_a_money_text_is_decimal_text_only_with_a_point(amount, expected):
    messages, _ = history(mode="precise", schemas=False)
    envelope = json.loads(messages[0])
    envelope["after"]["amount"] = amount
    event = parse_record(json.dumps(envelope), "ewallet_source")
    assert isinstance(event, ChangeEvent) and to_change(event).amount == expected


def test_without_a_schema_digits_alone_are_refused_not_guessed():
    """"1234" is valid decimal text and valid base64 (of -26588.24): neither reading is safe."""
    assert decimal_from_bytes("1234", 2, "amount") == Decimal("-26588.24")
    messages, _ = history(mode="precise", schemas=False)
    envelope = json.loads(messages[0])
    envelope["after"]["amount"] = "1234"
    item = parse_record(json.dumps(envelope), "ewallet_source")
    assert isinstance(item, Reject) and "ambiguous" in item.reason


def test_a_schema_that_says_decimal_without_a_scale_is_refused():
    messages, _ = history(mode="precise")
    envelope = json.loads(messages[2])
    for part in envelope["schema"]["fields"][:2]:
        for field in part["fields"]:
            if field["field"] == "amount":
                field["parameters"] = {}
    item = parse_record(json.dumps(envelope), "ewallet_source")
    assert isinstance(item, Reject) and "without a scale" in item.reason


# --- the records Debezium writes beside the change events ----------------------------------------

BEGIN = {"status": "BEGIN", "id": "571:53195829", "ts_ms": 1486500577125, "event_count": None,
         "data_collections": None}
END = {"status": "END", "id": "571:53195832", "ts_ms": 1486500577691, "event_count": 2,
       "data_collections": [{"data_collection": "ewallet_source.transactions",
                             "event_count": 2}]}
SCHEMA_CHANGE = {"source": {"server": "ewallet", "file": "binlog.000003", "pos": 154},
                 "ts_ms": 1486500577125, "databaseName": "ewallet_source", "schemaName": None,
                 "ddl": "ALTER TABLE transactions ADD COLUMN channel VARCHAR(20) NULL",
                 "tableChanges": [{"type": "ALTER", "id": "\"ewallet_source\".\"transactions\""}]}
HEARTBEAT = {"ts_ms": 1588252618953}


@pytest.mark.parametrize("record, label", [
    (BEGIN, "(transaction metadata)"), (END, "(transaction metadata)"),
    (SCHEMA_CHANGE, "(schema change)"), (HEARTBEAT, "(heartbeat)"),
])
@pytest.mark.parametrize("schemas", [False, True])
def test_metadata_schema_change_and_heartbeat_records_are_skipped_not_refused(record, label,
                                                                              schemas):
    text = json.dumps({"schema": {"type": "struct"}, "payload": record} if schemas else record)
    item = parse_record(text, "ewallet_source")
    assert isinstance(item, Skipped) and item.label == label


def test_a_line_with_its_kafka_key_before_a_tab_is_read_by_its_value():
    """kafka-console-consumer with print.key=true writes `key<TAB>value` per message."""
    messages, final = history(mode="precise")
    key = json.dumps({"schema": {"type": "struct"}, "payload": {"transaction_id": "DBZ3"}})
    event = parse_record(key + "\t" + messages[2], "ewallet_source")
    assert isinstance(event, ChangeEvent) and event.key == "DBZ3"
    assert parse_record(key + "\tnull", "ewallet_source") is None  # the delete's tombstone
    bad = parse_record("not json\t" + messages[2], "ewallet_source")
    assert isinstance(bad, Reject) and bad.reason == "not JSON"
