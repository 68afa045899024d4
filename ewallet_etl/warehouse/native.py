"""Arrow columns -> ClickHouse Native column bytes, vectorised: no Python object per value.

Why: clickhouse-driver's generic columns convert every value in Python (a Decimal costs
`int(Decimal(str(x)) * 100)`, about 1 s per million), and its NumPy mode needs pandas and
still encodes strings one by one. The Native encoding of the types the warehouse uses is small
and has not changed from ClickHouse 18.16 to today, so it is written here from the Arrow
buffers with NumPy:

* (U)Int8..64, Float32/64: little-endian fixed width; Bool and UInt8 from Arrow booleans.
* Date: UInt16 days since 1970-01-01. DateTime[('tz')]: UInt32 seconds since the epoch (the
  zone only changes how the server prints it); Arrow timestamps without a zone are UTC.
* Decimal(P, S) with P <= 18: the unscaled value (value * 10^S) as Int32 (P <= 9) or Int64.
  An Arrow decimal128 keeps exactly that integer in its 16 bytes: the low 8 bytes are copied
  once the high 8 are checked to be its sign extension.
* String: per value a LEB128 length then the UTF-8 bytes, built from Arrow's offsets and data.
* Nullable(T): one null-map byte per row, then T with NULLs as T's default.

Exactness over convenience: decimals are rescaled only by Arrow's checked cast (an error, never
a rounding), integers, dates and times are range-checked, sub-second times are refused, and a
NULL in a non-Nullable column is an error, never a default. Any other type (LowCardinality,
Enum, Array, Decimal wider than 18 digits, ...) raises `UnsupportedType`, and the caller uses
the driver's own (slow, generic) columns instead.
"""

from __future__ import annotations

import logging
import os
from decimal import Decimal
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# clickhouse-driver fills two tables with every date from 1900 to 2299 as it is imported (0.12 s
# of every run's start and ~20 MiB); its own switch (clickhouse-driver#430) fills them only with
# the dates actually read. The run's few Date values do not need the rest.
os.environ.setdefault("CLICKHOUSE_DRIVER_LASY_DATE_LUT", "1970-01-01:1970-01-01")

from clickhouse_driver import Client, defines  # noqa: E402
from clickhouse_driver.block import BlockInfo, ColumnOrientedBlock  # noqa: E402
from clickhouse_driver.protocol import ClientPacketTypes  # noqa: E402
from clickhouse_driver.varint import write_varint  # noqa: E402
from clickhouse_driver.writer import write_binary_str, write_binary_uint8  # noqa: E402

log = logging.getLogger(__name__)


class UnsupportedType(Exception):
    """This Arrow type / ClickHouse type pair has no vectorised encoder here."""


FIXED = {
    "Int8": "<i1", "Int16": "<i2", "Int32": "<i4", "Int64": "<i8",
    "UInt8": "<u1", "UInt16": "<u2", "UInt32": "<u4", "UInt64": "<u8",
    "Float32": "<f4", "Float64": "<f8",
}


class ArrowRows:
    """The data of one INSERT for `ArrowInsertClient`: Arrow tables with the same columns (one,
    or an iterator of them, streamed as they come), plus how to turn one column into the
    driver's generic Python values should a type have no encoder."""

    __slots__ = ("tables", "fallback")

    def __init__(self, tables: pa.Table | Iterable[pa.Table],
                 fallback: Callable[[pa.ChunkedArray], list]) -> None:
        self.tables = [tables] if isinstance(tables, pa.Table) else tables
        self.fallback = fallback


# The release this subclass was written against (tests/unit/test_library_pins.py fails loudly
# when another one is installed: re-check send_data's protocol, then move the pin).
WRITTEN_FOR = ("clickhouse-driver", "0.2.11")


class ArrowInsertClient(Client):
    """clickhouse-driver's Client, sending `[ArrowRows(tables)]` as pre-encoded Native blocks.

    `execute("INSERT INTO t (a, b) VALUES", [ArrowRows(tables)])` runs the driver's own insert
    protocol (query, the server's sample block with the column types, data blocks, an empty
    block, end of stream); only the encoding of the data blocks is replaced, by the server's
    declared type of each column. Tables are taken from the iterator one at a time, so a whole
    window can stream through one INSERT in bounded memory while the server already works on
    the blocks before. Any other data goes to the driver unchanged. Written against
    clickhouse-driver 0.2.11's protocol helpers (pinned in requirements.txt).
    """

    def send_data(self, sample_block: Any, data: Any, types_check: bool = False,
                  columnar: bool = False) -> int:
        if not (isinstance(data, list) and len(data) == 1 and isinstance(data[0], ArrowRows)):
            return super().send_data(sample_block, data, types_check=types_check,
                                     columnar=columnar)
        rows: ArrowRows = data[0]
        columns = sample_block.columns_with_types
        block_rows = max(1, int(self.connection.context.client_settings["insert_block_size"]))
        generic = False
        sent = 0
        for table in rows.tables:
            for at in range(0, table.num_rows, block_rows):
                part = table.slice(at, block_rows)
                if not generic:
                    try:
                        self._send_block(part.num_rows, _encode_block(part, columns))
                        continue
                    except UnsupportedType as exc:
                        log.debug("no vectorised encoder (%s): the driver's generic columns", exc)
                        generic = True
                values = [rows.fallback(part.column(name)) for name, _ in columns]
                self.connection.send_data(ColumnOrientedBlock(
                    columns_with_types=columns, data=values, types_check=types_check))
                self.receive_profile_events()
            sent += table.num_rows
        self.connection.send_data(ColumnOrientedBlock())  # an empty block ends the data
        self.receive_profile_events()
        return sent

    def _send_block(self, n_rows: int, encoded: list[tuple[str, str, bytes]]) -> None:
        """One Data packet, laid out as clickhouse-driver's own BlockOutputStream.write does."""
        conn = self.connection
        revision = conn.server_info.used_revision
        write_varint(ClientPacketTypes.DATA, conn.fout)
        if revision >= defines.DBMS_MIN_REVISION_WITH_TEMPORARY_TABLES:
            write_binary_str("", conn.fout)  # no external table name
        out = conn.block_out.fout  # the compressing buffer when compression is on
        if revision >= defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
            BlockInfo().write(out)
        write_varint(len(encoded), out)
        write_varint(n_rows, out)
        for name, ch_type, payload in encoded:
            write_binary_str(name, out)
            write_binary_str(ch_type, out)
            if revision >= defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION:
                write_binary_uint8(0, out)  # plain (not sparse) serialization
            out.write(payload)
        conn.block_out.finalize()
        self.receive_profile_events()


def _encode_block(table: pa.Table, columns: list[tuple[str, str]]) -> list[tuple[str, str, bytes]]:
    return [(name, ch_type, encode_column(table.column(name), ch_type))
            for name, ch_type in columns]


def encode_column(column: pa.Array | pa.ChunkedArray, ch_type: str) -> bytes:
    """The Native data of one column (no header) for a server column of type `ch_type`."""
    values = _one_array(column)
    if ch_type.startswith("Nullable(") and ch_type.endswith(")"):
        inner = ch_type[len("Nullable("):-1]
        null_map = _mask(values.is_null()).astype(np.uint8)
        filled = pc.fill_null(values, _default(values.type)) if values.null_count else values
        return null_map.tobytes() + _encode(filled, inner)
    if values.null_count:
        raise ValueError(f"NULL in a non-Nullable {ch_type} column")
    return _encode(values, ch_type)


def _encode(values: pa.Array, ch_type: str) -> bytes:
    kind = values.type
    if ch_type in FIXED:
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)):
            raise UnsupportedType(f"{kind} -> {ch_type}")
        return _fixed(values.to_numpy(zero_copy_only=False), np.dtype(FIXED[ch_type]), ch_type)
    if ch_type == "String":
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            raise UnsupportedType(f"{kind} -> {ch_type}")
        return _strings(values)
    if ch_type == "Date":
        if not pa.types.is_date(kind):
            raise UnsupportedType(f"{kind} -> {ch_type}")
        days = values.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False)
        return _fixed(days, np.dtype("<u2"), ch_type)
    if ch_type == "DateTime" or ch_type.startswith("DateTime("):
        if not pa.types.is_timestamp(kind):
            raise UnsupportedType(f"{kind} -> {ch_type}")
        seconds = values.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64())
        return _fixed(seconds.to_numpy(zero_copy_only=False), np.dtype("<u4"), ch_type)
    if ch_type.startswith("Decimal(") and pa.types.is_decimal(kind):
        return _decimal(values, ch_type)
    raise UnsupportedType(f"{kind} -> {ch_type}")


def _fixed(values: np.ndarray, dtype: np.dtype, ch_type: str) -> bytes:
    """Fixed-width values, refusing any value the target type cannot hold exactly."""
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    if values.size and not np.can_cast(values.dtype, dtype, "safe"):
        if dtype.kind in "iu" and values.dtype.kind in "iu":
            info = np.iinfo(dtype)
            low, high = values.min(), values.max()
            if int(low) < info.min or int(high) > info.max:
                raise ValueError(f"value out of range for {ch_type}: {low} .. {high}")
        elif dtype.kind in "iu":
            raise UnsupportedType(f"{values.dtype} -> {ch_type}")
    return values.astype(dtype, copy=False).tobytes()


def _decimal(values: pa.Array, ch_type: str) -> bytes:
    precision, scale = (int(p) for p in ch_type[len("Decimal("):-1].split(","))
    if precision > 18:
        raise UnsupportedType(ch_type)
    if not (pa.types.is_decimal128(values.type) and values.type.scale == scale):
        # Checked: Arrow raises rather than drop a digit (1.005 never becomes 1.00 or 1.01).
        values = pc.cast(values, pa.decimal128(38, scale))
    words = np.frombuffer(values.buffers()[1], dtype="<i8", count=2 * len(values),
                          offset=16 * values.offset).reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    limit = 10**precision  # |unscaled| < 10^P, which also fits Int64 (P <= 18)
    if low.size and (np.any(high != (low >> 63)) or low.min() <= -limit or low.max() >= limit):
        raise ValueError(f"value out of range for {ch_type}")
    return low.astype("<i4" if precision <= 9 else "<i8").tobytes()


def _strings(values: pa.Array) -> bytes:
    """LEB128(length) + bytes per value, laid out with array arithmetic, not a loop."""
    wide = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    count = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype="<i8" if wide else "<i4",
                            count=count + 1, offset=values.offset * (8 if wide else 4))
    first, last = int(offsets[0]), int(offsets[-1])
    data = (np.frombuffer(values.buffers()[2], dtype=np.uint8, count=last - first, offset=first)
            if last > first else np.zeros(0, np.uint8))
    lengths = np.diff(offsets).astype(np.int64)
    if count == 0:
        return b""
    longest = int(lengths.max())
    if longest < 128 and longest * count == data.size:  # all the same short length (ids, codes)
        table = np.empty((count, longest + 1), np.uint8)
        table[:, 0] = longest
        table[:, 1:] = data.reshape(count, longest)
        return table.tobytes()
    if longest < 128:  # one length byte each, before the value's bytes
        starts = offsets[:-1] - first + np.arange(count)
        out = np.empty(count + data.size, np.uint8)
        out[starts] = lengths
        is_data = np.ones(out.size, bool)
        is_data[starts] = False
        out[is_data] = data
        return out.tobytes()
    width = np.ones(count, np.int64)  # bytes of each LEB128 length
    for bits in (7, 14, 21, 28, 35):
        if longest >= (1 << bits):
            width += lengths >= (1 << bits)
    starts = np.zeros(count, np.int64)
    np.cumsum((width + lengths)[:-1], out=starts[1:])
    out = np.empty(int(width.sum()) + data.size, np.uint8)
    is_data = np.ones(out.size, bool)
    for k in range(int(width.max())):
        rows = np.flatnonzero(width > k)
        at = starts[rows] + k
        more = (width[rows] > k + 1).astype(np.int64) << 7
        out[at] = ((lengths[rows] >> (7 * k)) & 0x7F) | more
        is_data[at] = False
    out[is_data] = data
    return out.tobytes()


def _one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _mask(values: pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False).astype(bool)


def _default(kind: pa.DataType) -> pa.Scalar:
    """The value a NULL becomes under a Nullable column's null map (never read back)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.scalar("", kind)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.scalar(b"", kind)
    if pa.types.is_decimal(kind):
        return pa.scalar(Decimal(0), kind)
    if pa.types.is_boolean(kind):
        return pa.scalar(False, kind)
    if kind == pa.date32():
        return pa.scalar(0, pa.int32()).cast(kind)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pa.scalar(0, pa.int64()).cast(kind)
    return pa.scalar(0, kind)
