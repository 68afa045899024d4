"""Instants, one convention: the epoch is 1970-01-01 UTC, a naive datetime is UTC wall-clock
time (what a UTC session reads from MySQL), and versions and watermarks are whole microseconds
since the epoch."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NAIVE_EPOCH = datetime(1970, 1, 1)  # the epoch in UTC wall-clock time
MICROSECOND = timedelta(microseconds=1)


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken as UTC wall-clock time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (the pipeline's `_version` of a change time)."""
    if moment.tzinfo is None:  # UTC wall-clock time (per change row: no conversion made)
        return (moment - NAIVE_EPOCH) // MICROSECOND
    return (moment - EPOCH) // MICROSECOND  # an aware difference accounts for the offset


def from_micros(value: int) -> datetime:
    return EPOCH + value * MICROSECOND
