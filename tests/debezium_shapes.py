"""Change events shaped exactly as Debezium 2.x's MySQL connector emits them through Kafka
Connect's JSON converter, built from its documented formats (connector docs, "Data change
events" and "How the MySQL connector maps data types"): the envelope schema beside the payload
(or the payload alone with schemas disabled), DECIMAL in the three `decimal.handling.mode`s,
DATETIME as io.debezium.time.Timestamp / MicroTimestamp, TIMESTAMP as ZonedTimestamp, snapshot
reads (`op: r`, `source.snapshot`), and a delete followed by its Kafka tombstone (`null`)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DECIMAL_MODES = ("precise", "string", "double")


def amount_schema(mode: str) -> dict[str, Any]:
    if mode == "precise":
        return {"type": "bytes", "optional": False, "name": "org.apache.kafka.connect.data.Decimal",
                "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "10"},
                "field": "amount"}
    return {"type": "string" if mode == "string" else "double", "optional": False,
            "field": "amount"}


def time_schema(micro: bool) -> dict[str, Any]:
    name = "io.debezium.time.MicroTimestamp" if micro else "io.debezium.time.Timestamp"
    return {"type": "int64", "optional": False, "name": name, "version": 1,
            "field": "transaction_time"}


def zoned(field: str) -> dict[str, Any]:
    return {"type": "string", "optional": False, "name": "io.debezium.time.ZonedTimestamp",
            "version": 1, "default": "1970-01-01T00:00:00Z", "field": field}


def envelope_schema(mode: str, micro: bool) -> dict[str, Any]:
    row = [
        {"type": "string", "optional": False, "field": "transaction_id"},
        {"type": "int64", "optional": False, "field": "user_id"},  # INT UNSIGNED
        {"type": "int64", "optional": False, "field": "merchant_id"},
        amount_schema(mode),
        {"type": "string", "optional": False, "name": "io.debezium.data.Enum", "version": 1,
         "parameters": {"allowed": "SUCCESS,FAILED,PENDING,REFUNDED"}, "field": "status"},
        time_schema(micro),
        zoned("created_at"),
        zoned("updated_at"),
    ]
    value = "ewallet.ewallet_source.transactions.Value"
    source = [
        {"type": "string", "optional": False, "field": "version"},
        {"type": "string", "optional": False, "field": "connector"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "int64", "optional": False, "field": "ts_ms"},
        {"type": "string", "optional": True, "name": "io.debezium.data.Enum", "version": 1,
         "parameters": {"allowed": "true,last,false,incremental"}, "default": "false",
         "field": "snapshot"},
        {"type": "string", "optional": False, "field": "db"},
        {"type": "string", "optional": True, "field": "sequence"},
        {"type": "int64", "optional": True, "field": "ts_us"},
        {"type": "int64", "optional": True, "field": "ts_ns"},
        {"type": "string", "optional": True, "field": "table"},
        {"type": "int64", "optional": False, "field": "server_id"},
        {"type": "string", "optional": True, "field": "gtid"},
        {"type": "string", "optional": False, "field": "file"},
        {"type": "int64", "optional": False, "field": "pos"},
        {"type": "int32", "optional": False, "field": "row"},
        {"type": "int64", "optional": True, "field": "thread"},
        {"type": "string", "optional": True, "field": "query"},
    ]
    return {"type": "struct", "optional": False, "version": 2,
            "name": "ewallet.ewallet_source.transactions.Envelope", "fields": [
                {"type": "struct", "fields": row, "optional": True, "name": value,
                 "field": "before"},
                {"type": "struct", "fields": row, "optional": True, "name": value,
                 "field": "after"},
                {"type": "struct", "fields": source, "optional": False,
                 "name": "io.debezium.connector.mysql.Source", "field": "source"},
                {"type": "string", "optional": False, "field": "op"},
                {"type": "int64", "optional": True, "field": "ts_ms"},
                {"type": "int64", "optional": True, "field": "ts_us"},
                {"type": "int64", "optional": True, "field": "ts_ns"},
                {"type": "struct", "optional": True, "name": "event.block", "version": 1,
                 "field": "transaction", "fields": [
                     {"type": "string", "optional": False, "field": "id"},
                     {"type": "int64", "optional": False, "field": "total_order"},
                     {"type": "int64", "optional": False, "field": "data_collection_order"}]},
            ]}


def precise(amount: Decimal) -> str:
    """Kafka Connect's Decimal: the unscaled value's minimal big-endian two's-complement bytes
    (Java's BigInteger.toByteArray), base64 in JSON."""
    unscaled = int(amount.scaleb(2))
    length = (unscaled + (unscaled < 0)).bit_length() // 8 + 1
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // (datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - EPOCH)


@dataclass
class Row:
    transaction_id: str
    user_id: int
    merchant_id: int
    amount: Decimal
    status: str
    transaction_time: datetime  # UTC
    updated_at: datetime  # UTC, with microseconds

    def image(self, mode: str, micro: bool) -> dict[str, Any]:
        amount: Any = (precise(self.amount) if mode == "precise" else
                       str(self.amount) if mode == "string" else float(self.amount))
        at = _micros(self.transaction_time)
        return {"transaction_id": self.transaction_id, "user_id": self.user_id,
                "merchant_id": self.merchant_id, "amount": amount, "status": self.status,
                "transaction_time": at if micro else at // 1000,
                "created_at": self.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "updated_at": self.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def event(op: str, before: Row | None, after: Row | None, pos: int, *, mode: str = "precise",
          micro: bool = False, schemas: bool = True, db: str = "ewallet_source") -> str:
    """One Kafka message value, as the JSON converter writes it."""
    changed = after or before
    assert changed is not None
    ts_us = _micros(changed.updated_at)
    payload = {
        "before": before.image(mode, micro) if before else None,
        "after": after.image(mode, micro) if after else None,
        "source": {"version": "2.7.3.Final", "connector": "mysql", "name": "ewallet",
                   "ts_ms": ts_us // 1000, "snapshot": "true" if op == "r" else "false",
                   "db": db, "sequence": None, "ts_us": ts_us, "ts_ns": ts_us * 1000,
                   "table": "transactions", "server_id": 1, "gtid": None,
                   "file": "binlog.000003", "pos": pos, "row": 0, "thread": 7, "query": None},
        "op": op, "ts_ms": ts_us // 1000 + 5, "ts_us": ts_us + 5000, "ts_ns": ts_us * 1000,
        "transaction": None,
    }
    value = {"schema": envelope_schema(mode, micro), "payload": payload} if schemas else payload
    return json.dumps(value)


def history(mode: str = "precise", micro: bool = False, schemas: bool = True,
            db: str = "ewallet_source") -> tuple[list[str], dict[str, Row]]:
    """A snapshot of two rows, then an insert, updates, a delete with its tombstone; returns the
    messages and the final rows (the deleted one absent)."""
    t = datetime(2025, 1, 10, 8, 15, tzinfo=timezone.utc)
    u = datetime(2025, 3, 1, 9, 0, 0, 120000, tzinfo=timezone.utc)
    a = Row("DBZ1", 1, 1, Decimal("50000.00"), "SUCCESS", t, u)
    b = Row("DBZ2", 2, 3, Decimal("1234567.89"), "PENDING", t, u)
    c = Row("DBZ3", 3, 2, Decimal("0.01"), "SUCCESS", t, u.replace(microsecond=500000))
    b2 = Row("DBZ2", 2, 3, Decimal("1234567.89"), "SUCCESS", t,
             u.replace(second=1, microsecond=7))
    a2 = Row("DBZ1", 1, 1, Decimal("49999.99"), "REFUNDED", t, u.replace(second=2))
    kw = {"mode": mode, "micro": micro, "schemas": schemas, "db": db}
    messages = [
        event("r", None, a, 1000, **kw), event("r", None, b, 1000, **kw),
        event("c", None, c, 2000, **kw),
        event("u", b, b2, 3000, **kw),
        event("u", a, a2, 4000, **kw),
        event("d", c, None, 5000, **kw), "null",  # the delete's Kafka tombstone
    ]
    return messages, {"DBZ1": a2, "DBZ2": b2}


# users and merchants: their id (INT UNSIGNED -> int64), three texts, two TIMESTAMP(6) columns
DIMENSION_COLUMNS = {"users": ("user_id", ("name", "email", "city")),
                     "merchants": ("merchant_id", ("name", "category", "city"))}


def dimension_event(table: str, row: dict[str, Any], pos: int, *, op: str = "r",
                    schemas: bool = True, db: str = "ewallet_source") -> str:
    """One users or merchants change (`row`: the source columns, times as aware UTC
    datetimes), as the JSON converter writes it; a delete carries the row as `before`."""
    key, texts = DIMENSION_COLUMNS[table]
    fields = ([{"type": "int64", "optional": False, "field": key}]
              + [{"type": "string", "optional": False, "field": name} for name in texts]
              + [zoned("created_at"), zoned("updated_at")])
    image = {key: row[key], **{name: row[name] for name in texts},
             **{name: row[name].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                for name in ("created_at", "updated_at")}}
    ts_us = _micros(row["updated_at"])
    payload = {
        "before": image if op == "d" else None, "after": None if op == "d" else image,
        "source": {"version": "2.7.3.Final", "connector": "mysql", "name": "ewallet",
                   "ts_ms": ts_us // 1000, "snapshot": "true" if op == "r" else "false",
                   "db": db, "sequence": None, "ts_us": ts_us, "ts_ns": ts_us * 1000,
                   "table": table, "server_id": 1, "gtid": None, "file": "binlog.000003",
                   "pos": pos, "row": 0, "thread": 7, "query": None},
        "op": op, "ts_ms": ts_us // 1000 + 5, "transaction": None,
    }
    value_name = f"ewallet.{db}.{table}.Value"
    schema = {"type": "struct", "optional": False, "version": 2,
              "name": f"ewallet.{db}.{table}.Envelope", "fields": [
                  {"type": "struct", "fields": fields, "optional": True, "name": value_name,
                   "field": "before"},
                  {"type": "struct", "fields": fields, "optional": True, "name": value_name,
                   "field": "after"},
                  {"type": "string", "optional": False, "field": "op"}]}
    return json.dumps({"schema": schema, "payload": payload} if schemas else payload)
