"""Ad-hoc query results (`query_with_names`) made the same on both engines, from the column's
ClickHouse type: the driver gives a Decimal without its scale (Decimal(18, 2) 50000 as `50000`),
chDB's Arrow output gives a DateTime as its epoch seconds (a UInt32). Both are put back as the
type says: a Decimal at its scale, a DateTime as a datetime (aware in its zone, or naive in the
engine's zone when the type names none, as the server's driver gives it)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable
from zoneinfo import ZoneInfo

DECIMAL = re.compile(r"^(?:Nullable\()?Decimal\d*\((?:\d+,\s*)?(\d+)\)")
DATETIME = re.compile(r"^(?:Nullable\()?DateTime(?:\('([^']+)'\))?\)?$")


def decimal_fixer(type_name: str) -> Callable[[Any], Any] | None:
    """A function giving a Decimal its column's scale, or None for another type."""
    match = DECIMAL.match(type_name)
    if match is None:
        return None
    quantum = Decimal(1).scaleb(-int(match.group(1)))
    return lambda v: v if v is None else Decimal(v).quantize(quantum)


def epoch_fixer(type_name: str, engine_zone: str) -> Callable[[Any], Any] | None:
    """A function turning epoch seconds into the datetime a DateTime column means, or None."""
    match = DATETIME.match(type_name)
    if match is None:
        return None
    zone = ZoneInfo(match.group(1) or engine_zone)
    if match.group(1):
        return lambda v: v if v is None else datetime.fromtimestamp(v, zone)
    return lambda v: v if v is None else datetime.fromtimestamp(v, zone).replace(tzinfo=None)


def fix_rows(rows: list[tuple], fixers: list[Callable[[Any], Any] | None]) -> list[tuple]:
    if not any(fixers):
        return rows
    return [tuple(v if f is None else f(v) for v, f in zip(row, fixers, strict=True))
            for row in rows]
