"""Binlog CDC: what a Query event means for the replica (pure: SQL text in, a verdict out).

Row-based replication carries every row change as a rows event, except for statements the
server logs as SQL text. Those change rows the reader never sees, so none may pass silently:

* `TRUNCATE [TABLE] t` of a replicated table: REPLICATE. Every replica row current at that
  point gets a tombstone at the TRUNCATE's version (its end position), so rows written after
  it (higher positions) show again and a replay is absorbed (binlog.py applies the batch read
  before it first).
* Statement-based DML on a replicated table (`INSERT`, `REPLACE`, `UPDATE`, `DELETE`,
  `LOAD DATA/XML` from a session with binlog_format=STATEMENT, or MIXED's unsafe cases): STOP.
  Re-executing SQL text against a replica in another engine is not safe (defaults, triggers,
  functions, multi-table joins), and guessing its rows is worse than stopping.
* DDL the replica cannot follow - `DROP TABLE`, `RENAME TABLE`, `ALTER TABLE ... RENAME`,
  `ALTER TABLE ... EXCHANGE/TRUNCATE/DROP PARTITION`, `CREATE OR REPLACE TABLE` of a replicated
  table, `DROP DATABASE` of the source database: STOP.
* Anything else - other ALTER TABLE (later row images describe themselves: binlog_row_metadata
  =FULL), CREATE TABLE, temporary tables, other tables and databases - is no concern.

A STOP names the statement kind and table; the stream saves the position before the
statement's transaction and exits 2; `--resnapshot` is the way forward (binlog.py).

Limits: names are matched case-insensitively (a server with lower_case_table_names=0 may then
stop for `TRANSACTIONS`, never pass over `transactions`); an unqualified name belongs to the
event's default schema; rows changed by triggers of a statement-logged statement on another
table, and values an ALTER rewrites in place (a narrowed column), are not seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Collection

Xid = tuple[int, bytes, bytes]  # (formatID, gtrid, bqual), as in XA_PREPARE_LOG_EVENT


class Action(Enum):
    TRUNCATE = "truncate"  # replicate: tombstone every current row of the table
    STOP = "stop"  # cannot be replicated: stop the stream before it


@dataclass(frozen=True)
class Verdict:
    action: Action
    kind: str  # e.g. "statement-based INSERT", "DROP TABLE"
    table: str  # the replicated table concerned (the database name for DROP DATABASE)


_LEXEMES = re.compile(r"""
      (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<ident>`(?:[^`]|``)*`)
    | (?P<exec>/\*M?!\d*)                  # /*!40101 ... */ is executed: keep its body
    | (?P<comment>/\*.*?\*/|(?:--[ \t]|\#)[^\n]*)
""", re.S | re.X)
_PART = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_NAME = re.compile(rf"({_PART})(?:\s*\.\s*({_PART}))?")
_DML = re.compile(r"(INSERT|REPLACE|UPDATE|DELETE|LOAD\s+(?:DATA|XML))\b", re.I)
_INTO = re.compile(r"(?:INSERT|REPLACE)\s+(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)\s+)*"
                   r"(?:INTO\s+)?(.*)", re.I | re.S)
_LOAD_INTO = re.compile(r"\bINTO\s+TABLE\s+(.*)", re.I | re.S)
_UPDATE = re.compile(r"UPDATE\s+(.*?)\bSET\b", re.I | re.S)
_DELETE = re.compile(r"DELETE\s+(.*?)(?:\bWHERE\b|\bORDER\s+BY\b|\bLIMIT\b|\bRETURNING\b|$)",
                     re.I | re.S)
_TRUNCATE = re.compile(r"TRUNCATE\s+(?:TABLE\s+)?(.*)", re.I | re.S)
_DROP_TABLE = re.compile(r"DROP\s+(TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?(.*)", re.I | re.S)
_DROP_DATABASE = re.compile(r"DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?(.*)", re.I | re.S)
_RENAME = re.compile(r"RENAME\s+TABLES?\s+(.*)", re.I | re.S)
_ALTER = re.compile(r"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(.*)", re.I | re.S)
_ALTER_RENAME = re.compile(r"\bRENAME\s+(?!COLUMN\b|INDEX\b|KEY\b)(?:(?:TO|AS)\s+)?(.*)",
                           re.I | re.S)
_ALTER_PARTITION = re.compile(r"\b(EXCHANGE|TRUNCATE|DROP)\s+PARTITION\b", re.I)
_CREATE_OR_REPLACE = re.compile(r"CREATE\s+OR\s+REPLACE\s+(TEMPORARY\s+)?TABLE\s+(.*)",
                                re.I | re.S)
_XA_END = re.compile(r"XA\s+(COMMIT|ROLLBACK)\s+(.*?)\s*$", re.I | re.S)
_XA_PART = re.compile(r"\s*(?:X'([0-9A-Fa-f]*)'|'((?:[^'\\]|\\.|'')*)'|(\d+))\s*(?:,|$)")


def clean(sql: str) -> str:
    """The statement without comments (executable ones unwrapped), strings emptied."""
    def keep(match: re.Match[str]) -> str:
        if match.group("string") is not None:
            return "''"
        return match.group("ident") if match.group("ident") is not None else " "
    return _LEXEMES.sub(keep, sql).replace("*/", " ").strip()


def _unquote(part: str) -> str:
    return part[1:-1].replace("``", "`") if part.startswith("`") else part


def _names(text: str, schema: str) -> list[tuple[str, str]]:
    """Every (database, table) a piece of SQL can name, unqualified ones in `schema`."""
    found = []
    for match in _NAME.finditer(text):
        first, second = _unquote(match.group(1)), match.group(2)
        found.append((first, _unquote(second)) if second else (schema, first))
    return found


def _replicated(text: str, schema: str, database: str | None,
                tables: Collection[str]) -> str | None:
    """The first replicated table named in `text` (database None: any database)."""
    wanted = {t.lower() for t in tables}
    for db, table in _names(text, schema):
        if table.lower() in wanted and (database is None or db.lower() == database.lower()):
            return table.lower()
    return None


def _first_name(text: str) -> str:
    match = _NAME.match(text.strip())
    return match.group(0) if match else ""


def classify(sql: str, schema: str, database: str | None,
             tables: Collection[str]) -> Verdict | None:
    """What the replica must do about a Query event; None when it is no concern."""
    text = clean(sql)

    def hit(action: Action, kind: str, names: str) -> Verdict | None:
        table = _replicated(names, schema, database, tables)
        return Verdict(action, kind, table) if table else None

    if dml := _DML.match(text):
        verb = " ".join(dml.group(1).upper().split())
        return hit(Action.STOP, f"statement-based {verb}", _dml_targets(verb, text))
    if match := _TRUNCATE.match(text):
        return hit(Action.TRUNCATE, "TRUNCATE TABLE", _first_name(match.group(1)))
    if (match := _DROP_TABLE.match(text)) and not match.group(1):
        return hit(Action.STOP, "DROP TABLE", match.group(2))
    if match := _RENAME.match(text):
        return hit(Action.STOP, "RENAME TABLE", match.group(1))
    if match := _ALTER.match(text):
        return _alter(match.group(1), schema, database, tables)
    if (match := _CREATE_OR_REPLACE.match(text)) and not match.group(1):
        return hit(Action.STOP, "CREATE OR REPLACE TABLE", _first_name(match.group(2)))
    if (match := _DROP_DATABASE.match(text)) and database is not None:
        name = _unquote(_first_name(match.group(1)))
        if name.lower() == database.lower():
            return Verdict(Action.STOP, "DROP DATABASE", database)
    return None


def _dml_targets(verb: str, text: str) -> str:
    """The part of a DML statement that names the tables it writes (and, for multi-table
    UPDATE/DELETE, the ones it joins: conservative)."""
    if verb.startswith("LOAD"):
        match = _LOAD_INTO.search(text)
        return _first_name(match.group(1)) if match else ""
    if verb in ("INSERT", "REPLACE"):
        match = _INTO.match(text)
        return _first_name(match.group(1)) if match else ""
    match = (_UPDATE if verb == "UPDATE" else _DELETE).match(text)
    return match.group(1) if match else text


def _alter(rest: str, schema: str, database: str | None,
           tables: Collection[str]) -> Verdict | None:
    """ALTER TABLE: followed by the replica (row images describe the new shape), except a
    rename (from or to a replicated name) and partition moves, which change rows silently."""
    table = _first_name(rest)
    renamed = _ALTER_RENAME.search(rest[len(table):])
    names = table + (" " + _first_name(renamed.group(1)) if renamed else "")
    target = _replicated(names, schema, database, tables)
    if target and renamed:
        return Verdict(Action.STOP, "ALTER TABLE ... RENAME", target)
    partition = _ALTER_PARTITION.search(rest)
    if target and partition:
        return Verdict(Action.STOP, f"ALTER TABLE ... {partition.group(1).upper()} PARTITION",
                       target)
    return None


def xa_resolution(sql: str) -> tuple[bool, Xid] | None:
    """`XA COMMIT xid` -> (True, xid), `XA ROLLBACK xid` -> (False, xid), else None. The server
    logs the xid as X'gtrid',X'bqual',formatID; quoted strings are accepted too. `XA COMMIT
    ... ONE PHASE` is not a resolution: its rows came as an ordinary transaction."""
    match = _XA_END.match(sql.strip())  # not clean(): it would empty the xid's strings
    if not match or re.search(r"\bONE\s+PHASE$", match.group(2), re.I):
        return None
    parts: list[bytes | int] = []
    pos, body = 0, match.group(2)
    while pos < len(body) and len(parts) < 3:
        part = _XA_PART.match(body, pos)
        if not part:
            return None
        hexa, text, number = part.groups()
        parts.append(bytes.fromhex(hexa) if hexa is not None else
                     text.encode() if text is not None else int(number))
        pos = part.end()
    gtrid, bqual, fmt = (parts + [b"", 1])[:3] if len(parts) == 1 else (parts + [1])[:3]
    if not isinstance(gtrid, bytes) or not isinstance(bqual, bytes) or not isinstance(fmt, int):
        return None
    return match.group(1).upper() == "COMMIT", (fmt, gtrid, bqual)


def xa_start(sql: str) -> bool:
    """`XA START` / `XA BEGIN` (MySQL writes it as a query; MariaDB flags its GTID event)."""
    return re.match(r"XA\s+(?:START|BEGIN)\b", sql.strip(), re.I) is not None
