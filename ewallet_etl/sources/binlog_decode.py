"""Faster decoding for python-mysql-replication 1.0.17, active only inside `fast_decoding()`.

Two patches of the library's classes, installed while the binlog reader runs and removed when
it stops (process-wide meanwhile; nothing else in this process reads the binlog):

1. TableMap cache. The server writes a Table_map event before every rows event and the
   library re-parses its full optional metadata each time (~63% of the reader's time on
   single-row statements, figures in docs/binlog-cdc.md, "Lag and throughput figures").
   `TableMapEvent.__init__` now reuses the parsed table when the event's bytes (table id,
   names, types, metadata) were seen before.
2. Row decoder. The library decodes every value through a long if-chain per column and row.
   `RowsEvent._fetch_rows` now uses readers compiled once per table, straight from the
   packet's bytes, for the column types of our tables (integers, VARCHAR/CHAR, DECIMAL,
   DATETIME(0-6), TIMESTAMP(0-6)). Anything else - another type, a MINIMAL row image, a
   partial JSON update - goes through the library's own decoder. Values are the library's (str, int,
   decimal.Decimal, naive datetime, None for NULL and for invalid dates; a TIMESTAMP is the
   naive UTC datetime of its seconds since the epoch, whatever the host's or the writer's time
   zone, and 0 - the zero date - is 1970-01-01, as in the library: binlog_source turns it into
   None); the integration test `test_fast_decoding_equals_the_library` compares the two on
   real events.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from decimal import Context, Decimal
from typing import Any, Callable, Iterator

from pymysql.charset import charset_by_name
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.constants.BINLOG import PARTIAL_UPDATE_ROWS_EVENT
from pymysqlreplication.row_event import RowsEvent, TableMapEvent, UpdateRowsEvent

from ewallet_etl.core.instants import EPOCH

Reader = Callable[[bytes, int], tuple[Any, int]]
# The release these patches were written against (tests/unit/test_library_pins.py fails loudly
# when another one is installed: re-check the patched internals, then move the pin).
WRITTEN_FOR = ("mysql-replication", "1.0.17")

_TABLE_CACHE: dict[bytes, Any] = {}
_parse_table_map = TableMapEvent.__init__
_library_fetch_rows = RowsEvent._fetch_rows
INT_SIZES = {FIELD_TYPE.TINY: 1, FIELD_TYPE.SHORT: 2, FIELD_TYPE.INT24: 3, FIELD_TYPE.LONG: 4,
             FIELD_TYPE.LONGLONG: 8}
DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
MAX_DECIMAL_DIGITS = 65  # DECIMAL(65, 30): MySQL's widest
NAIVE_EPOCH = EPOCH.replace(tzinfo=None)  # decoded values are naive UTC, as the library's


def _cached_table_map_init(self: TableMapEvent, from_packet: Any, event_size: int,
                           table_map: dict, ctl_connection: Any, **kwargs: Any) -> None:
    raw = from_packet.packet  # the pymysql packet; its unread bytes are this event's body
    body = bytes(raw._data[raw._position:raw._position + event_size])
    table = _TABLE_CACHE.get(body)
    if table is None:
        _parse_table_map(self, from_packet, event_size, table_map, ctl_connection, **kwargs)
        if self._processed and len(_TABLE_CACHE) < 10_000:
            _TABLE_CACHE[body] = self.table_obj
        return
    self.packet, self.table_map, self._processed, self.complete = from_packet, table_map, True, True
    self.event_type, self.timestamp = from_packet.event_type, from_packet.timestamp
    self.event_size, self.table_id = event_size, table.table_id
    self.schema, self.table, self.columns, self.table_obj = (
        table.schema, table.table, table.columns, table)
    table_map[self.table_id] = table


# --- readers: (bytes, offset) -> (value, next offset) -----------------------------------------

def _int_reader(size: int, unsigned: bool) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        return int.from_bytes(buf[pos:pos + size], "little", signed=not unsigned), pos + size
    return read


def _string_reader(length_bytes: int, encoding: str) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        n = buf[pos] if length_bytes == 1 else buf[pos] | buf[pos + 1] << 8
        start = pos + length_bytes
        return buf[start:start + n].decode(encoding), start + n
    return read


EXACT = Context(prec=MAX_DECIMAL_DIGITS)  # scaleb rounds to its context's precision otherwise


def _decimal_reader(precision: int, scale: int) -> Reader:
    """MySQL's binary DECIMAL: groups of 9 digits in 4 bytes, the rest in 1-4 bytes, big
    endian, sign in the top bit (set = positive), negative values stored inverted. Read as one
    integer whose groups are cut out by shifts (half the time of a loop over bytes)."""
    int_words, int_rest = divmod(precision - scale, 9)
    frac_words, frac_rest = divmod(scale, 9)
    head, tail = DIG2BYTES[int_rest], DIG2BYTES[frac_rest]
    size = head + 4 * int_words + 4 * frac_words + tail
    sign_bit = 1 << (8 * size - 1)
    inverted = (1 << (8 * size)) - 1 ^ sign_bit  # a negative value: every bit but the sign
    groups: list[tuple[int, int, int]] = []  # (shift, mask, 10**digits), least significant first
    shift = 0
    widths = ([(tail, frac_rest)] + [(4, 9)] * (frac_words + int_words) + [(head, int_rest)])
    for width, digits in widths:
        if width:
            groups.append((shift, (1 << 8 * width) - 1, 10**digits))
            shift += 8 * width
    groups.reverse()
    exponent = -scale

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        value = int.from_bytes(buf[pos:end], "big")
        negative = not value & sign_bit
        value ^= inverted if negative else sign_bit
        unscaled = 0
        for at, mask, factor in groups:
            unscaled = unscaled * factor + (value >> at & mask)
        return Decimal(-unscaled if negative else unscaled).scaleb(exponent, EXACT), end
    return read


def _datetime2_reader(fsp: int) -> Reader:
    """DATETIME(fsp): 40 bits (sign, year*13+month, day, hour, minute, second), then the
    fraction in (fsp+1)//2 bytes. An invalid date (0000-00-00) is None, as in the library."""
    frac_bytes = (fsp + 1) // 2
    scale = 10 ** (6 - fsp) if fsp else 0
    end = 5 + frac_bytes
    last: list[Any] = [None, None]  # the last bytes read and their value, as for TIMESTAMP

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        raw = buf[pos:pos + end]
        if raw == last[0]:
            return last[1], pos + end
        v = int.from_bytes(raw[:5], "big")
        micro = 0
        if frac_bytes:
            micro = int.from_bytes(raw[5:], "big")
            micro = (micro // 10 if fsp % 2 else micro) * scale
        ym = v >> 22 & 0x1FFFF
        try:
            value = datetime(ym // 13, ym % 13, v >> 17 & 0x1F, v >> 12 & 0x1F, v >> 6 & 0x3F,
                             v & 0x3F, micro)
        except ValueError:
            value = None
        last[0], last[1] = raw, value
        return value, pos + end
    return read


def _timestamp2_reader(fsp: int) -> Reader:
    """TIMESTAMP(fsp): seconds since the epoch in 4 bytes big endian (an instant: the server
    stores UTC), then the fraction as in DATETIME2. Never through the host's time zone."""
    frac_bytes = (fsp + 1) // 2
    scale = 10 ** (6 - fsp) if fsp else 0

    end = 4 + frac_bytes
    last: list[Any] = [None, None]  # the last bytes read and their value: the rows of one
    # statement mostly share their timestamps (NOW() for all of them)

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        raw = buf[pos:pos + end]
        if raw == last[0]:
            return last[1], pos + end
        seconds = int.from_bytes(raw[:4], "big")
        micro = 0
        if frac_bytes:
            micro = int.from_bytes(raw[4:], "big")
            micro = (micro // 10 if fsp % 2 else micro) * scale
        # timedelta(days, seconds, microseconds) by position: a third faster than by keyword
        last[0], last[1] = raw, NAIVE_EPOCH + timedelta(0, seconds, micro)
        return last[1], pos + end
    return read


def _reader(column: Any) -> Reader | None:
    kind = column.type
    if kind in INT_SIZES:
        return _int_reader(INT_SIZES[kind], column.unsigned)
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING):
        name = column.character_set_name
        charset = charset_by_name(name) if name else None
        encoding = charset.encoding if charset else (name or "utf-8")
        return _string_reader(2 if column.max_length > 255 else 1, encoding)
    if kind == FIELD_TYPE.NEWDECIMAL:
        return _decimal_reader(column.precision, column.decimals)
    if kind == FIELD_TYPE.DATETIME2:
        return _datetime2_reader(column.fsp)
    if kind == FIELD_TYPE.TIMESTAMP2:
        return _timestamp2_reader(column.fsp)
    return None


def _readers(table: Any) -> list[tuple[str, Reader]] | None:
    """The table's compiled readers, kept on the library's Table object (`_` keeps them out of
    its `data`), or None when a column needs the library's decoder."""
    if "_fast_readers" not in table.__dict__:
        readers = [(c.name, _reader(c)) for c in table.columns]
        ok = all(name and reader for name, reader in readers)
        table._fast_readers = readers if ok else None
    return table._fast_readers


def _image(buf: bytes, pos: int, readers: list[tuple[str, Reader]], null_bytes: int
           ) -> tuple[dict[str, Any], int]:
    nulls, pos = buf[pos:pos + null_bytes], pos + null_bytes
    values: dict[str, Any] = {}
    if not nulls.strip(b"\0"):  # no NULL in the row (the usual case): no bit to test
        for name, read in readers:
            values[name], pos = read(buf, pos)
        return values, pos
    for i, (name, read) in enumerate(readers):
        if nulls[i >> 3] & 1 << (i & 7):
            values[name] = None
        else:
            values[name], pos = read(buf, pos)
    return values, pos


def _all_present(bitmap: bytes, columns: int) -> bool:
    """True for a FULL row image: the first `columns` bits of the bitmap are set."""
    mask = (1 << columns) - 1
    return int.from_bytes(bitmap, "little") & mask == mask


def _fast_fetch_rows(self: RowsEvent) -> None:
    table = self.table_map[self.table_id]
    readers = _readers(table)
    update = isinstance(self, UpdateRowsEvent)
    if (readers is None or not self.complete or self.event_type == PARTIAL_UPDATE_ROWS_EVENT
            or self.packet._BinLogPacketWrapper__data_buffer
            or not _all_present(self.columns_present_bitmap, len(readers))
            or update and not _all_present(self.columns_present_bitmap2, len(readers))):
        return _library_fetch_rows(self)
    raw = self.packet.packet
    start = raw._position
    buf = raw._data[start:start + self.event_size - self.packet.read_bytes]
    null_bytes, pos, rows = (len(readers) + 7) // 8, 0, []
    while pos < len(buf):
        if update:
            before, pos = _image(buf, pos, readers, null_bytes)
            after, pos = _image(buf, pos, readers, null_bytes)
            rows.append({"before_values": before, "before_none_sources": {},
                         "after_values": after, "after_none_sources": {}})
        else:
            values, pos = _image(buf, pos, readers, null_bytes)
            rows.append({"values": values, "none_sources": {}})
    self._RowsEvent__rows = rows


@contextlib.contextmanager
def fast_decoding(rows: bool = True) -> Iterator[None]:
    """Install the TableMap cache (and the row decoder unless `rows` is False)."""
    TableMapEvent.__init__ = _cached_table_map_init
    if rows:
        RowsEvent._fetch_rows = _fast_fetch_rows
    try:
        yield
    finally:
        TableMapEvent.__init__ = _parse_table_map
        RowsEvent._fetch_rows = _library_fetch_rows
        _TABLE_CACHE.clear()
