"""Change events -> star-schema rows, pure: the batch's rules on the stream's changes.

The batch load and the change streams (binlog CDC, event replay) write the same `fact_sales`,
`dim_users` and `dim_merchants`, so both must make the same rows with the same versions:

* **Version** = the row's change time, `updated_at`, in microseconds (`transform.versions`),
  whatever version the replica tables use (a binlog position, a file's `_version`). An event
  without `updated_at` uses its own version when that is of the microsecond scheme; otherwise it
  cannot feed the star schema (`None`: counted, the replica still takes it).
* **Facts**: the validated change becomes a source-shaped row and goes through
  `transform.transform_transactions`: the same categories, status rule, surrogate keys and
  refusals as the batch. A refused row, and a row the replica refused (`BadRow`), becomes a
  retraction at its version, as in the batch.
* **Deletes** of transactions become tombstones at the deleted row's change time + 1 µs: above
  every version of the row that existed, below any later re-insert (a new `updated_at`).
* **Dimensions**: users and merchants through `transform_users` / `transform_merchants`. A
  deleted user or merchant stays in its dimension, as in the batch load: their sales keep their
  names. The facts' users and merchants get inferred members (version 0): a fact whose user
  has not arrived yet still counts, and the real row replaces the member.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

import pyarrow as pa

from ewallet_etl.core import events, transform
from ewallet_etl.core.events import BadEvent, ChangeEvent
from ewallet_etl.core.instants import micros
from ewallet_etl.core.version_scheme import Scheme

US = pa.timestamp("us")
DELETED = "deleted in the source"
# The source columns of each dimension after its id, in transform_users/merchants' names.
DIMENSION_COLUMNS = {"users": ("user_id", ("name", "email", "city")),
                     "merchants": ("merchant_id", ("name", "category", "city"))}


def change_time_us(event: ChangeEvent) -> int | None:
    """The star version of an insert or update: its `updated_at` in µs; else the event's own
    version when it is of the microsecond scheme; else None."""
    value = event.row.get("updated_at")
    if isinstance(value, datetime):
        return micros(value)
    if isinstance(value, str):
        try:
            return micros(events.iso_time(value, "updated_at"))
        except BadEvent:
            return None
    if type(value) is int and value >= 0:
        return value  # already microseconds (a producer that sends numbers)
    return event.version if event.scheme is Scheme.MICROS else None


def delete_version(event: ChangeEvent) -> int | None:
    """The star version of a delete: the deleted image's change time + 1 µs; a delete that
    carries no image but a microsecond version (a flat event) takes that version."""
    if event.row.get("updated_at") is not None:
        at = change_time_us(event)
        return None if at is None else at + 1
    return event.version if event.scheme is Scheme.MICROS else None


def source_facts(rows: Sequence[tuple[str, int, int, Decimal, str, int, int]]) -> pa.Table:
    """(transaction_id, user_id, merchant_id, amount, status, transaction_time seconds,
    version µs) -> a batch shaped as the extraction reads the source, for
    `transform.transform_transactions` (updated_at carries the version)."""
    keys, users, merchants, amounts, statuses, seconds, versions = (
        zip(*rows, strict=True) if rows else ((),) * 7)
    return pa.table({
        "transaction_id": pa.array(keys, pa.string()),
        "user_id": pa.array(users, pa.int64()),
        "merchant_id": pa.array(merchants, pa.int64()),
        "amount": pa.array(amounts, transform.WAREHOUSE_AMOUNT),
        "status": pa.array(statuses, pa.string()),
        "transaction_time": pa.array([s * 1_000_000 for s in seconds], pa.int64()).cast(US),
        "updated_at": pa.array(versions, pa.int64()).cast(US),
    })


def tombstones(keys: Sequence[str], versions: Sequence[int]) -> pa.Table:
    """fact_sales tombstones (`_deleted` = 1) of these keys at these versions."""
    return transform.retractions(pa.table({
        "record_key": pa.array(keys, pa.string()),
        "_version": pa.array(versions, pa.uint64()),
        "reason": pa.array([DELETED] * len(keys), pa.string()),
    }))


def members_for(source: pa.Table, refused_keys: set[str]) -> dict[str, pa.Table]:
    """Inferred members (version 0) of every user and merchant the loaded facts of `source`
    (a `source_facts` batch; `refused_keys`: its rows the transform refused) refer to."""
    if refused_keys:
        keep = [key not in refused_keys for key in source.column("transaction_id").to_pylist()]
        source = source.filter(pa.array(keep, pa.bool_()))
    return {table: transform.inferred_members(
                source.column(f"{domain}_id").to_numpy(zero_copy_only=False), domain)
            for domain, table in (("user", "dim_users"), ("merchant", "dim_merchants"))}


def dimension_rows(table: str, rows: Sequence[tuple[int, tuple[Any, ...], int]]) -> pa.Table:
    """(id, text attributes, version µs) of users or merchants -> dim_users / dim_merchants
    rows, through the batch's own transform."""
    id_column, texts = DIMENSION_COLUMNS[table]
    ids = [r[0] for r in rows]
    batch = pa.table({
        id_column: pa.array(ids, pa.int64()),
        **{name: pa.array([r[1][i] or "" for r in rows], pa.string())
           for i, name in enumerate(texts)},
        "updated_at": pa.array([r[2] for r in rows], pa.int64()).cast(US),
    })
    return (transform.transform_users if table == "users"
            else transform.transform_merchants)(batch)
