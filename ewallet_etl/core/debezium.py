"""Debezium row images as Kafka Connect's JSON converter writes them, decoded exactly (pure).

Debezium's MySQL connector encodes some columns by logical type; the JSON converter puts the
schema of every field beside the payload (`{"schema": ..., "payload": ...}`) unless schemas
are disabled. The rules, one per logical type (Debezium 2.x defaults):

* `org.apache.kafka.connect.data.Decimal` (`decimal.handling.mode=precise`, the default): the
  unscaled value as base64 big-endian two's-complement bytes, the scale in
  `parameters.scale` -> an exact Decimal. Without a schema the scale is unknown: a base64 amount
  is then read at the source column's scale, `SOURCE_AMOUNT_SCALE` (DECIMAL(10, 2) in
  DDL-MySQL-Source.sql). A source whose amount has another scale must send schemas or use
  `decimal.handling.mode=string`.
* `io.debezium.data.VariableScaleDecimal`: `{scale, value}` with the same bytes.
* `decimal.handling.mode=string`: a decimal text, taken as it is. Without a schema, a money
  text is decimal text when it has a point (string mode writes the column's scale: "1234.00")
  and base64 otherwise; digits alone fit both readings and are refused.
* `decimal.handling.mode=double`: a JSON number. It is parsed as written (never through a
  float) and accepted only with at most 15 significant digits: every such decimal survives the
  trip through an IEEE double unchanged (DBL_DIG = 15), so the text is the source's value. A
  longer one may not be, and is refused. DECIMAL(10, 2) amounts always pass.
* `io.debezium.time.Timestamp` (DATETIME(0-3)): epoch milliseconds; `MicroTimestamp`
  (DATETIME(4-6)): microseconds; `NanoTimestamp`: nanoseconds. A DATETIME has no zone: the
  value is the wall-clock time read as UTC, which is what the source's UTC clock holds.
* `io.debezium.time.ZonedTimestamp` (TIMESTAMP columns, e.g. updated_at): an ISO-8601 text in
  UTC, kept as text (the apply step parses it).
* Without a schema, an integer time is milliseconds below 10**14 (the year 5138 in ms) and
  microseconds from there (10**14 µs is 1973; transactions before 2000 are refused anyway).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Mapping

from ewallet_etl.core.value_rules import is_decimal_text

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SOURCE_AMOUNT_SCALE = 2  # transactions.amount DECIMAL(10, 2), DDL-MySQL-Source.sql
DECIMAL = "org.apache.kafka.connect.data.Decimal"
VARIABLE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
TIME_UNITS = {"io.debezium.time.Timestamp": 1000, "io.debezium.time.MicroTimestamp": 1,
              "io.debezium.time.NanoTimestamp": None}  # -> microseconds per unit (None: / 1000)
EXACT_DOUBLE_DIGITS = 15
MILLIS_BELOW = 10**14
MONEY = ("amount",)
TIMES = ("transaction_time", "created_at", "updated_at")


class DecodeError(ValueError):
    """A field does not decode as its schema says; the message names the field."""


def field_schemas(schema: Any, image: str) -> dict[str, Mapping[str, Any]]:
    """The schemas of the fields of `image` ("before" or "after") in an envelope's schema."""
    if not isinstance(schema, Mapping):
        return {}
    for part in schema.get("fields") or ():
        if isinstance(part, Mapping) and part.get("field") == image:
            return {f["field"]: f for f in part.get("fields") or ()
                    if isinstance(f, Mapping) and isinstance(f.get("field"), str)}
    return {}


def decode_row(row: Mapping[str, Any], schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A row image with its money and times decoded by their schema (or, with none, by the
    schemaless rules above); other columns as they are."""
    out = dict(row)
    for name, value in row.items():
        if value is None:
            continue
        schema = schemas.get(name)
        if schema is not None:
            out[name] = _by_schema(name, value, schema)
        elif name in MONEY and isinstance(value, str):
            out[name] = schemaless_money(value, name)
        elif name in TIMES and type(value) is int:
            out[name] = from_epoch(value, 1000 if abs(value) < MILLIS_BELOW else 1, name)
    return out


def schemaless_money(value: str, name: str) -> Any:
    """A money text without its schema: decimal text when it has a point (string mode writes
    every digit of the column's scale, "1234.00"), else precise base64 at the source's scale.
    Digits alone are both valid decimal text and valid base64 (of a negative number), so they
    are refused rather than guessed at."""
    if is_decimal_text(value):
        if "." in value:
            return value
        raise DecodeError(f"{name} without a schema is ambiguous (digits only: decimal text or "
                          f"base64?); send schemas or use decimal.handling.mode=string")
    return decimal_from_bytes(value, SOURCE_AMOUNT_SCALE, name)


def _by_schema(name: str, value: Any, schema: Mapping[str, Any]) -> Any:
    logical = schema.get("name")
    if logical == DECIMAL:
        scale = (schema.get("parameters") or {}).get("scale")
        if not (isinstance(scale, str) and scale.isdigit()):
            raise DecodeError(f"{name}: Decimal schema without a scale")
        return decimal_from_bytes(value, int(scale), name)
    if logical == VARIABLE_DECIMAL:
        if not isinstance(value, Mapping) or type(value.get("scale")) is not int:
            raise DecodeError(f"{name} is not a VariableScaleDecimal")
        return decimal_from_bytes(value.get("value"), value["scale"], name)
    if logical in TIME_UNITS:
        if type(value) is not int:
            raise DecodeError(f"{name} is not an integer {logical}")
        return from_epoch(value, TIME_UNITS[logical], name)
    if schema.get("type") in ("double", "float") and isinstance(value, Decimal):
        if len(value.normalize().as_tuple().digits) > EXACT_DOUBLE_DIGITS:
            raise DecodeError(f"{name} sent as a double with more than {EXACT_DOUBLE_DIGITS} "
                              f"significant digits may not be exact; use "
                              f"decimal.handling.mode=precise or string")
    return value


def decimal_from_bytes(value: Any, scale: int, name: str) -> Decimal:
    """Base64 big-endian two's-complement unscaled bytes -> Decimal at `scale`."""
    if not isinstance(value, str):
        raise DecodeError(f"{name} is not a base64 Decimal")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{name} is not a decimal number or a base64 Decimal") from None
    if not raw:
        raise DecodeError(f"{name} is an empty base64 Decimal")
    return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)


def from_epoch(value: int, micros_per_unit: int | None, name: str) -> datetime:
    """An epoch count (ms, µs, or ns when `micros_per_unit` is None) -> an aware UTC datetime."""
    micros = value // 1000 if micros_per_unit is None else value * micros_per_unit
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise DecodeError(f"{name} is out of range") from None
