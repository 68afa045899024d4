"""Change events: one model whatever the source, and the parsers of the event files.

`ChangeEvent` is what every CDC source produces (the JSON files here, the live binlog later);
`Reject` is an input record refused with a reason. `read_events` turns a text stream into
those two, one record at a time, so memory stays flat however big the input:

* a JSON array (first non-blank character `[`), split element by element with
  `JSONDecoder.raw_decode` over a buffered reader; a malformed element is cut at the next
  top-level `,` and rejected, and the elements after it still parse;
* otherwise JSON Lines, one record per line.

Each record is either the write-up's flat object (`op` insert/update/delete, the source
columns, `_version` ISO-8601) or a Debezium envelope (`before`/`after`, `op` c/u/d/r,
`source`), optionally inside `{"payload": ...}`; recognised per record. Numbers are parsed
with `parse_float=Decimal`, so an amount never passes through a float.

Versions (UInt64, they decide which change of a key wins in ReplacingMergeTree):

* flat events: `_version` in microseconds since the epoch, so two changes in one second differ;
* Debezium with binlog coordinates (`source.file`, `source.pos`, `source.row`):
  `binlog_version`, the position itself, which grows in commit order (the live binlog reader
  uses the same layout); the binlog's event timestamps are statement start times in whole
  seconds and can run backwards across transactions, so they are not used when a position is
  there;
* Debezium without a position: `source.ts_us`, else `ts_ns // 1000`, else `ts_ms * 1000`.

The two schemes are not comparable, so every ChangeEvent says which one its version is in
(`scheme`, see `version_scheme.py`): a replica table takes one scheme only.

Debezium Kafka tombstones (`null`, `{"payload": null}`) are skipped: they carry no change.
Debezium events of the three source tables are ours (transactions keyed by `transaction_id`,
users and merchants by their id); events of another table, or of another database than the
one `read_events` is given, become `Skipped` items: neither applied nor refused, only counted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from itertools import chain
from typing import Any, Iterator, Mapping, TextIO, Union

from ewallet_etl.core import debezium
from ewallet_etl.core.instants import EPOCH
from ewallet_etl.core.value_rules import MAX_ID
from ewallet_etl.core.version_scheme import (
    Scheme,
    debezium_scheme,
    has_binlog_position,
    is_foreign,
    origin_label,
)

CHUNK_CHARS = 1 << 20
DEFAULT_TABLE = "transactions"
# The source tables a Debezium file may carry, and the column that keys each one's events.
KEY_COLUMNS = {"transactions": "transaction_id", "users": "user_id", "merchants": "merchant_id"}
SOURCE_COLUMNS = ("transaction_id", "user_id", "merchant_id", "amount", "status",
                  "transaction_time")
MICROSECOND = timedelta(microseconds=1)
MAX_UINT64 = (1 << 64) - 1
# 1..64 characters (the source's VARCHAR(64)), no control characters, valid UTF-8 (bytes that
# are not UTF-8 reach us as lone surrogates through errors="surrogateescape").
KEY_PATTERN = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,64}")
BINLOG_FILE_SEQ = re.compile(r"\.(\d+)$")


class Op(Enum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


FLAT_OPS = {op.value: op for op in Op}
DEBEZIUM_OPS = {"c": Op.INSERT, "r": Op.INSERT, "u": Op.UPDATE, "d": Op.DELETE}


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change of one source row.

    `row` holds the source columns of the after image as the source gave them (a delete: the
    last known image, or just the key); the apply step validates and converts them. `version`
    is monotonic per key (see the module docstring). `raw` is the record's text, kept only to
    quarantine it if the apply step refuses it; sources without text leave it empty. `scheme`
    is how `version` was made; None when the producer does not say (the binlog reader: its
    run is checked against the replica as a whole, before it starts).
    """

    op: Op
    table: str
    key: str
    row: Mapping[str, Any]
    version: int
    raw: str = field(default="", repr=False, compare=False)
    scheme: Scheme | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """An input record refused: `key` and `version` when they could be read, else "" and 0."""

    key: str
    version: int
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A Debezium event of another database or table, or a record of the topics around the
    change events (`kind`: transaction metadata, schema change, heartbeat): not ours, not
    applied, not refused."""

    database: str | None
    table: str
    kind: str = ""

    @property
    def label(self) -> str:
        return f"({self.kind})" if self.kind else origin_label(self.database, self.table)


def other_record(obj: Mapping[str, Any]) -> Skipped | None:
    """A record Debezium writes beside the change events when it is read from the same file:
    transaction metadata (BEGIN/END, `provide.transaction.metadata`), a schema change (the
    schema history topic: `ddl`, `tableChanges`), or a heartbeat (`ts_ms` alone)."""
    if obj.get("status") in ("BEGIN", "END") and "id" in obj and "op" not in obj:
        return Skipped(None, "", "transaction metadata")
    if ("ddl" in obj or "tableChanges" in obj) and "op" not in obj:
        database = obj.get("databaseName")
        return Skipped(database if isinstance(database, str) else None, "", "schema change")
    if set(obj) == {"ts_ms"}:
        return Skipped(None, "", "heartbeat")
    return None


Item = Union[ChangeEvent, Reject, Skipped]


class BadEvent(ValueError):
    """A record refused with a reason (one of a fixed set of texts, so reasons can be counted)."""


class BadRow(BadEvent):
    """A well-formed event of our table (key and version read) whose row is refused: its
    version retracts the older ones of the key (`cdc.retraction`), so a stale row never stays
    counted; a newer good version replaces the retraction."""


def read_events(stream: TextIO, chunk_chars: int = CHUNK_CHARS,
                database: str | None = None) -> Iterator[Item]:
    """Yield one ChangeEvent, Reject or Skipped per record of `stream` (JSON array or JSON
    Lines). `database`: the source database; Debezium events naming another one are Skipped
    (None: any database; events of other tables are Skipped either way)."""
    chunks = iter(lambda: stream.read(chunk_chars), "")
    head = ""
    for chunk in chunks:
        head += chunk
        if head.lstrip("\ufeff \t\r\n"):
            break
    head = head.lstrip("\ufeff \t\r\n")
    if not head:
        return
    rest = chain([head], chunks)
    yield from (_array_items(rest, database) if head[0] == "[" else _line_items(rest, database))


def parse_record(text: str, database: str | None = None) -> Item | None:
    """One JSON text -> a ChangeEvent, a Reject, a Skipped, or None for a Debezium tombstone."""
    try:
        obj = json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError):
        key, tab, value = text.partition("\t")
        if tab and _is_json(key):  # kafka-console-consumer's print.key=true: key TAB value
            return parse_record(value.strip(), database)
        return Reject("", 0, "not JSON", text)
    return parse_object(obj, text, database)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def parse_object(obj: Any, raw: str, database: str | None = None) -> Item | None:
    """A decoded record -> ChangeEvent (flat or Debezium), Reject, Skipped (a Debezium event
    of another database or table), or None (tombstone)."""
    schema = None
    if isinstance(obj, dict) and "payload" in obj and set(obj) <= {"schema", "payload"}:
        obj, schema = obj["payload"], obj.get("schema")
    if obj is None:
        return None
    try:
        if not isinstance(obj, dict):
            raise BadEvent("not a JSON object")
        if (other := other_record(obj)) is not None:
            return other
        if "after" in obj or "before" in obj:
            return from_debezium(obj, raw, database, schema)
        return from_flat(obj, raw)
    except BadEvent as exc:
        return _reject(obj, raw, str(exc))


def from_flat(obj: Mapping[str, Any], raw: str = "") -> ChangeEvent:
    """The write-up's flat event: op, transaction_id, source columns, _version (ISO-8601)."""
    key = event_key(obj.get("transaction_id"))
    if "_version" not in obj:
        raise BadEvent("missing _version")
    version = iso_micros(obj["_version"], "_version")
    op = obj.get("op")
    if op is None:
        raise BadEvent("missing op")
    if not isinstance(op, str) or op not in FLAT_OPS:
        raise BadEvent("unknown op")
    table = obj.get("table", DEFAULT_TABLE)
    if not isinstance(table, str):
        raise BadEvent("table is not a string")
    if table != DEFAULT_TABLE:  # the flat format has the transactions' columns only
        raise BadEvent("table is not replicated")
    row = {name: obj[name] for name in SOURCE_COLUMNS if name in obj}
    return ChangeEvent(FLAT_OPS[op], table, key, row, version, raw, Scheme.MICROS)


def from_debezium(env: Mapping[str, Any], raw: str = "", database: str | None = None,
                  schema: Any = None) -> ChangeEvent | Skipped:
    """A Debezium change event (the envelope's value: before, after, op, source, ts_ms), its
    row image decoded by the envelope's `schema` when the converter sent one (`debezium.py`).
    Where it comes from is decided first: another table's row is not ours to validate."""
    source = env.get("source") or {}
    if not isinstance(source, dict):
        raise BadEvent("Debezium source is not an object")
    table = source.get("table", DEFAULT_TABLE)
    if not isinstance(table, str):
        raise BadEvent("table is not a string")
    db = source.get("db") if isinstance(source.get("db"), str) else None
    if is_foreign(db, table, database):
        return Skipped(db, table)
    op = env.get("op")
    if not isinstance(op, str) or op not in DEBEZIUM_OPS:
        raise BadEvent("unknown Debezium op")
    side = "before" if DEBEZIUM_OPS[op] is Op.DELETE else "after"
    image = env.get(side)
    if not isinstance(image, dict):
        raise BadEvent("Debezium event without its row image")
    if table == DEFAULT_TABLE:
        key = event_key(image.get("transaction_id"))
    else:
        key = dimension_key(image.get(KEY_COLUMNS[table]), KEY_COLUMNS[table])
    try:
        row = debezium.decode_row(image, debezium.field_schemas(schema, side))
    except debezium.DecodeError as exc:
        raise BadEvent(str(exc)) from None
    return ChangeEvent(DEBEZIUM_OPS[op], table, key, row, debezium_version(source), raw,
                       debezium_scheme(source))


def debezium_version(source: Mapping[str, Any]) -> int:
    """The binlog position when the event has one, else the source's time in microseconds."""
    if has_binlog_position(source):
        row = source.get("row") or 0
        if not _is_int(row):
            raise BadEvent("Debezium source.row is not an integer")
        return binlog_version(source["file"], source["pos"], row)
    for name, to_micros in (("ts_us", 1), ("ts_ns", None), ("ts_ms", 1000)):
        value = source.get(name)
        if isinstance(value, int) and _is_int(value) and value >= 0:
            micros = value // 1000 if to_micros is None else value * to_micros
            if micros <= MAX_UINT64:
                return micros
    raise BadEvent("Debezium event without a source position or timestamp")


def binlog_version(file: str, pos: int, row: int = 0) -> int:
    """(binlog file sequence, position, row in the event) packed into a UInt64, in binlog order.

    The layout of the live binlog reader (`binlog_state.version`): 16 bits of file sequence,
    32 bits of position (binlog positions are 32-bit), 16 bits of row index; anything wider is
    refused, never wrapped. Debezium's `pos` is where the event starts, the reader's where it
    ends: both grow in binlog order, so versions from the two still order changes correctly.
    """
    match = BINLOG_FILE_SEQ.search(file)
    if match is None:
        raise BadEvent("binlog file name has no sequence number")
    seq = int(match.group(1))
    if not (0 <= seq < 1 << 16 and 0 <= pos < 1 << 32 and 0 <= row < 1 << 16):
        raise BadEvent("binlog position out of range")
    return (seq << 32 | pos) << 16 | row


def iso_micros(value: Any, name: str) -> int:
    """An ISO-8601 time with a UTC offset -> microseconds since the epoch (>= 0)."""
    moment = iso_time(value, name)
    micros = (moment - EPOCH) // MICROSECOND
    if micros < 0:
        raise BadEvent(f"{name} is before 1970")
    return micros


def iso_time(value: Any, name: str) -> datetime:
    """Parse an ISO-8601 text that carries an offset (`Z`, `+00:00`, `+07:00`, ...)."""
    if not isinstance(value, str):
        raise BadEvent(f"{name} is not an ISO-8601 text")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadEvent(f"{name} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise BadEvent(f"{name} has no UTC offset")
    return moment


def event_key(value: Any) -> str:
    """The primary key as text: a string of 1-64 characters, no control characters."""
    if value is None:
        raise BadEvent("missing transaction_id")
    if not isinstance(value, str):
        raise BadEvent("transaction_id is not a string")
    if not KEY_PATTERN.fullmatch(value):
        raise BadEvent("transaction_id is empty, too long or has invalid characters")
    return value


def dimension_key(value: Any, column: str) -> str:
    """A users/merchants id from an event's row image, as the key text (`"42"`)."""
    if value is None:
        raise BadEvent(f"missing {column}")
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise BadEvent(f"{column} is not an id (0..4294967295)")
    return str(value)


def _reject(obj: Any, raw: str, reason: str) -> Reject:
    """A Reject carrying whatever key and version can still be read from the record."""
    key, version = "", 0
    if isinstance(obj, dict):
        image = obj.get("after") or obj.get("before") or obj
        image = image if isinstance(image, dict) else obj
        candidate = image.get("transaction_id")
        key = candidate if isinstance(candidate, str) and KEY_PATTERN.fullmatch(candidate) else ""
        try:
            if image is obj:
                version = iso_micros(obj.get("_version"), "_version")
            else:
                version = debezium_version(obj.get("source") or {})
        except (BadEvent, AttributeError):
            version = 0
    return Reject(key, version, reason, raw)


def _is_int(value: Any) -> bool:
    return type(value) is int


# --- framing ---------------------------------------------------------------------------------

def _line_items(chunks: Iterator[str], database: str | None) -> Iterator[Item]:
    pending: list[str] = []  # the start of a line that is still being read
    for chunk in chunks:
        if "\n" not in chunk:
            pending.append(chunk)
            continue
        lines = ("".join(pending) + chunk).split("\n")
        pending = [lines.pop()]
        yield from _records(lines, database)
    yield from _records(["".join(pending)], database)


def _records(lines: list[str], database: str | None) -> Iterator[Item]:
    for line in lines:
        text = line.strip()
        if text:
            item = parse_record(text, database)
            if item is not None:
                yield item


WHITESPACE = re.compile(r"[ \t\n\r]*")
OUTSIDE_STRING = re.compile(r'["\[\]{},]')
INSIDE_STRING = re.compile(r'["\\]')


def _after_blanks(text: str, pos: int) -> int:
    """The position after the whitespace at `pos` (WHITESPACE matches the empty string too)."""
    blanks = WHITESPACE.match(text, pos)
    return blanks.end() if blanks else pos


class _ArraySplitter:
    """Streams the elements of a top-level JSON array; `buf[pos:]` is the unread text."""

    def __init__(self, chunks: Iterator[str], database: str | None) -> None:
        self.chunks = chunks
        self.database = database
        self.buf = next(chunks)
        self.pos = self.buf.index("[") + 1
        self.eof = False
        self.decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal)

    def fill(self) -> bool:
        """Read one more chunk (dropping the consumed text); False at the end of input."""
        chunk = next(self.chunks, None)
        if chunk is None:
            self.eof = True
            return False
        self.buf, self.pos = self.buf[self.pos:] + chunk, 0
        return True

    def skip_blank(self) -> bool:
        """Move past whitespace, reading on as needed; False when the input is exhausted."""
        while True:
            self.pos = _after_blanks(self.buf, self.pos)
            if self.pos < len(self.buf):
                return True
            if not self.fill():
                return False

    def items(self) -> Iterator[Item]:
        if self.skip_blank() and self.buf[self.pos] == "]":
            yield from self.after_array()
            return
        while True:
            item = self.element()
            if item is not None:
                yield item
            while True:  # to the separator; text where one belongs is refused, not guessed at
                if not self.skip_blank():
                    yield Reject("", 0, "JSON array not closed (truncated input?)", "")
                    return
                char = self.buf[self.pos]
                if char == "]":
                    yield from self.after_array()
                    return
                if char == ",":
                    self.pos += 1
                    break
                end = self.element_end()
                yield Reject("", 0, "missing ',' between array elements",
                             self.buf[self.pos:end])
                self.pos = end

    def element(self) -> Item | None:
        """Decode the element at `pos`; a malformed one is cut at the next top-level `,`/`]`."""
        while True:
            self.skip_blank()
            start = self.pos
            try:
                obj, end = self.decoder.raw_decode(self.buf, start)
            except (ValueError, RecursionError):
                cut = _element_end(self.buf, start)
                if cut is None and not self.eof and self.fill():
                    continue
                cut = len(self.buf) if cut is None else cut
                self.pos = cut
                text = self.buf[start:cut].strip()
                return Reject("", 0, "not JSON" if text else "empty array element", text)
            # A number or literal cut by the chunk's end decodes as a shorter one: make sure
            # something follows the value before trusting it.
            if _after_blanks(self.buf, end) == len(self.buf) and not self.eof:
                if self.fill():
                    continue
            self.pos = end
            return parse_object(obj, self.buf[start:end], self.database)

    def element_end(self) -> int:
        while True:
            cut = _element_end(self.buf, self.pos)
            if cut is not None:
                return cut
            if not self.fill():
                return len(self.buf)

    def after_array(self) -> Iterator[Item]:
        self.pos += 1
        if self.skip_blank():
            yield Reject("", 0, "data after the JSON array", self.buf[self.pos:self.pos + 4096])


def _array_items(chunks: Iterator[str], database: str | None) -> Iterator[Item]:
    yield from _ArraySplitter(chunks, database).items()


def _element_end(buf: str, pos: int) -> int | None:
    """Index of the `,` or `]` that ends the array element starting at `pos` (None: not yet)."""
    depth, i = 0, pos
    while True:
        match = OUTSIDE_STRING.search(buf, i)
        if match is None:
            return None
        char, i = match.group(), match.end()
        if char == '"':
            while True:  # skip the string, escapes included
                inner = INSIDE_STRING.search(buf, i)
                if inner is None:
                    return None
                i = inner.end() + (1 if inner.group() == "\\" else 0)
                if inner.group() == '"':
                    break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:
                return match.start()
            depth -= 1
        elif depth == 0:
            return match.start()
