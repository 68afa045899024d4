"""Pure rules of the binlog CDC: positions and versions, transaction boundaries, preflight
checks on fake variable/grant lists, resumability, and rows events -> change events."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ewallet_etl.core.binlog_position import (
    BoundaryTracker,
    Position,
    VersionOverflow,
    derive_server_id,
    file_sequence,
    privilege_problems,
    server_id_problems,
    variable_problems,
    version,
)
from ewallet_etl.sources.binlog import _is_zero_timestamp

GOOD_VARIABLES = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                  "binlog_row_metadata": "FULL", "server_id": "1"}


@pytest.mark.parametrize("name, expected", [
    ("binlog.000001", 1), ("mysql-bin.000042", 42), ("/var/lib/mysql/host-bin.123456", 123456),
])
def test_file_sequence(name, expected):
    assert file_sequence(name) == expected


def test_file_sequence_rejects_names_without_a_number():
    with pytest.raises(ValueError):
        file_sequence("binlog")


@pytest.mark.parametrize("earlier, later", [
    (("binlog.000001", 500), ("binlog.000001", 501)),
    (("binlog.000001", 4_000_000_000), ("binlog.000002", 4)),
    (("binlog.000009", 10), ("binlog.000010", 4)),  # numeric, not text order
])
def test_positions_and_versions_follow_the_binlog_order(earlier, later):
    a, b = Position.of(*earlier), Position.of(*later)
    assert a < b
    assert version(a, 65535) < version(b, 0)


def test_rows_of_one_event_get_increasing_versions():
    end = Position.of("binlog.000003", 1234)
    assert [version(end, i) for i in range(3)] == sorted({version(end, i) for i in range(3)})


def test_snapshot_version_is_below_every_later_change():
    snapshot = Position.of("binlog.000007", 1000)
    first_event_end = Position.of("binlog.000007", 1001)
    assert version(snapshot) < version(first_event_end, 0)
    assert version(Position.of("binlog.065535", 2**32 - 1), 65535) == 2**64 - 1


@pytest.mark.parametrize("file, pos, row", [
    ("binlog.065536", 4, 0), ("binlog.000001", 2**32, 0), ("binlog.000001", 4, 65536),
])
def test_versions_out_of_range_raise_instead_of_wrapping(file, pos, row):
    with pytest.raises(VersionOverflow):
        version(Position.of(file, pos), row)


def test_derived_server_id_is_stable_distinct_and_in_range():
    a = derive_server_id("binlog_cdc", "ewallet_source")
    assert a == derive_server_id("binlog_cdc", "ewallet_source")
    assert a != derive_server_id("binlog_cdc", "other_db")
    assert 100_000 <= a < 2**31


# --- transaction boundaries -------------------------------------------------------------------

def _feed(tracker: BoundaryTracker, events: list[tuple]) -> list[bool]:
    out = []
    for kind, arg in events:
        if kind == "gtid":
            tracker.gtid(arg)
            out.append(False)
        elif kind == "query":
            out.append(tracker.query(arg))
        elif kind == "xid":
            out.append(tracker.xid())
        else:  # a rows event: never a boundary
            out.append(False)
    return out


@pytest.mark.parametrize("events, boundaries", [
    # MariaDB transaction: GTID (flags 0) rows XID
    ([("gtid", 0), ("rows", None), ("xid", None)], [False, False, True]),
    # MariaDB DDL: GTID with FL_STANDALONE, then the statement
    ([("gtid", 1), ("query", "ALTER TABLE x ADD c INT")], [False, True]),
    # MariaDB non-transactional table: ends with a COMMIT query
    ([("gtid", 0), ("rows", None), ("query", "COMMIT")], [False, False, True]),
    # MySQL: GTID, BEGIN, rows, XID
    ([("gtid", None), ("query", "BEGIN"), ("rows", None), ("xid", None)],
     [False, False, False, True]),
    # MySQL DDL (no BEGIN)
    ([("gtid", None), ("query", "CREATE TABLE t (a INT)")], [False, True]),
    # a statement-logged query inside a transaction is not a boundary
    ([("gtid", 0), ("query", "INSERT INTO t VALUES (1)"), ("xid", None)], [False, False, True]),
])
def test_boundaries_only_between_transactions(events, boundaries):
    assert _feed(BoundaryTracker(), events) == boundaries


# --- preflight --------------------------------------------------------------------------------

def test_good_settings_have_no_problems():
    assert variable_problems(GOOD_VARIABLES) == []


@pytest.mark.parametrize("change, fix", [
    ({"binlog_format": "MIXED"}, "SET GLOBAL binlog_format='ROW'"),
    ({"binlog_format": "STATEMENT"}, "binlog_format=ROW in my.cnf [mysqld]"),
    ({"binlog_row_image": "MINIMAL"}, "SET GLOBAL binlog_row_image='FULL'"),
    ({"binlog_row_metadata": "NO_LOG"}, "SET GLOBAL binlog_row_metadata='FULL'"),
    ({"binlog_row_metadata": "MINIMAL"}, "binlog_row_metadata=FULL in my.cnf"),
    ({"log_bin": "OFF"}, "log_bin=binlog in my.cnf"),
])
def test_each_wrong_setting_gives_one_message_with_its_fix(change, fix):
    problems = variable_problems({**GOOD_VARIABLES, **change})
    assert len(problems) == 1 and fix in problems[0]


def test_a_server_without_row_metadata_is_told_which_version_it_needs():
    variables = {k: v for k, v in GOOD_VARIABLES.items() if k != "binlog_row_metadata"}
    (problem,) = variable_problems(variables)
    assert "MariaDB >= 10.5" in problem and "MySQL >= 8.0.14" in problem


def test_every_problem_is_reported_not_just_the_first():
    bad = {**GOOD_VARIABLES, "binlog_format": "MIXED", "binlog_row_image": "MINIMAL",
           "binlog_row_metadata": "NO_LOG"}
    assert len(variable_problems(bad)) == 3


def test_variable_names_and_values_are_case_insensitive():
    assert variable_problems({k.upper(): v.lower() for k, v in GOOD_VARIABLES.items()}) == []


USER = "'cdc'@'%'"


@pytest.mark.parametrize("grants, missing", [
    (["GRANT ALL PRIVILEGES ON *.* TO `cdc`@`%`"], []),
    (["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cdc`@`%`"], []),
    (["GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%'"], []),
    (["GRANT SELECT, REPLICATION CLIENT ON *.* TO `cdc`@`%`"], ["REPLICATION SLAVE"]),
    (["GRANT SELECT, REPLICATION SLAVE ON *.* TO `cdc`@`%`"], ["REPLICATION CLIENT"]),
    (["GRANT USAGE ON *.* TO `cdc`@`%`", "GRANT ALL PRIVILEGES ON `src`.* TO `cdc`@`%`"],
     ["REPLICATION SLAVE", "REPLICATION CLIENT"]),  # database-level grants do not count
])
def test_privileges(grants, missing):
    problems = privilege_problems(grants, USER)
    assert len(problems) == len(missing)
    for name, problem in zip(missing, problems, strict=True):
        assert f"GRANT {name} ON *.* TO {USER}" in problem


@pytest.mark.parametrize("server_id, source_id, replicas, ok", [
    (123456, 1, [], True),
    (1, 1, [], False),                                   # the source's own id
    (123456, 1, [(123456, "other@db")], False),          # another replica has it
    (123456, 1, [(123456, "me@db")], True),              # our own dead connection
    (123456, 1, [(777, "other@db")], True),
    (0, 1, [], False),
    (2**32, 1, [], False),
])
def test_server_id_must_be_free(server_id, source_id, replicas, ok):
    problems = server_id_problems(server_id, source_id, replicas, "me@db")
    assert (problems == []) == ok
    assert all("CDC_SERVER_ID" in p for p in problems)


# --- resumability -----------------------------------------------------------------------------

LOGS = {"binlog.000003": 1000, "binlog.000004": 500}


@pytest.mark.parametrize("saved, message", [
    (("binlog.000003", 400), None),
    (("binlog.000004", 500), None),
    (("binlog.000002", 400), "no longer on the server"),   # purged
    (("binlog.000003", 5000), "no longer on the server"),  # past the file's end
    (("binlog.000009", 4), "the binlog was reset"),        # ahead of the server
])
def test_a_saved_position_must_still_be_on_the_server(saved, message):
    from ewallet_etl.pipelines.binlog import PreflightError, check_resumable

    end = Position.of("binlog.000004", 500)
    if message is None:
        check_resumable(Position.of(*saved), LOGS, end)
    else:
        with pytest.raises(PreflightError, match=message) as refused:
            check_resumable(Position.of(*saved), LOGS, end)
        assert "--resnapshot" in str(refused.value)


# --- rows events -> change events -------------------------------------------------------------

def _event(cls_name: str, table: str, rows: list[dict], dropped: tuple[str, ...] = ()):
    """A rows event of `table`: its columns are the table's (less `dropped`) and the rows'."""
    from types import SimpleNamespace

    from pymysqlreplication import row_event

    from ewallet_etl.sources.binlog import NEEDED_COLUMNS

    event = object.__new__(getattr(row_event, cls_name))
    event.table = table
    names = dict.fromkeys([*rows[0].get("values", rows[0].get("after_values", {})),
                           *NEEDED_COLUMNS[table]])
    event.columns = [SimpleNamespace(name=n) for n in names if n not in dropped]
    event._RowsEvent__rows = rows
    return event


def test_rows_events_become_versioned_change_events():
    from ewallet_etl.core.events import Op
    from ewallet_etl.sources.binlog import row_changes

    end = Position.of("binlog.000002", 900)
    update = _event("UpdateRowsEvent", "transactions", [
        {"before_values": {"transaction_id": "A", "amount": Decimal("1.00")},
         "after_values": {"transaction_id": "A", "amount": Decimal("2.00")}},
        {"before_values": {"transaction_id": "B", "amount": Decimal("1.00")},  # key change
         "after_values": {"transaction_id": "C", "amount": Decimal("1.00")}},
    ])
    changes = row_changes(update, end)
    assert [(c.op, c.key, c.version) for c in changes] == [
        (Op.UPDATE, "A", version(end, 0)),
        (Op.DELETE, "B", version(end, 1)),
        (Op.UPDATE, "C", version(end, 1)),
    ]
    delete = _event("DeleteRowsEvent", "users", [{"values": {"user_id": 7, "name": None}}])
    (gone,) = row_changes(delete, end)
    assert (gone.op, gone.table, gone.key, gone.row["name"]) == (Op.DELETE, "users", "7", None)


def test_an_event_with_more_rows_than_the_version_has_room_for_is_refused():
    from ewallet_etl.core.binlog_position import VersionOverflow
    from ewallet_etl.sources.binlog import row_changes

    end = Position.of("binlog.000002", 900)
    rows = [{"values": {"user_id": i, "name": "x"}} for i in range(1 << 16)]
    assert row_changes(_event("WriteRowsEvent", "users", rows), end)[-1].version == version(
        end, (1 << 16) - 1)
    with pytest.raises(VersionOverflow):
        row_changes(_event("WriteRowsEvent", "users", [*rows, rows[0]]), end)


def test_rows_without_column_names_or_with_a_minimal_image_are_refused():
    from ewallet_etl.sources.binlog import StreamError, row_changes

    end = Position.of("binlog.000002", 900)
    nameless = _event("WriteRowsEvent", "users", [{"values": {"UNKNOWN_COL0": 1}}])
    with pytest.raises(StreamError, match="binlog_row_metadata=FULL"):
        row_changes(nameless, end)
    minimal = _event("UpdateRowsEvent", "users", [
        {"before_values": {"user_id": 1, "name": None},
         "before_none_sources": {"name": "cols bitmap"},
         "after_values": {"user_id": 1, "name": "x"}, "after_none_sources": {}}])
    with pytest.raises(StreamError, match="binlog_row_image=FULL"):
        row_changes(minimal, end)


def test_rows_without_a_column_the_warehouse_needs_stop_the_stream():
    from ewallet_etl.sources.binlog import ColumnsMissing, UnreplicableStatement, row_changes

    end = Position.of("binlog.000002", 900)
    renamed = _event("WriteRowsEvent", "transactions",
                     [{"values": {"transaction_id": "A", "state": "SUCCESS"}}], ("status",))
    with pytest.raises(ColumnsMissing) as stopped:
        row_changes(renamed, end)
    assert isinstance(stopped.value, UnreplicableStatement)  # the stream stops before it
    assert stopped.value.missing == ["status"] and "no column status" in str(stopped.value)


# --- the compiled readers of binlog_decode ----------------------------------------------------

@pytest.mark.parametrize("data, precision, scale, expected", [
    ("80 00 04 d2 38", 10, 2, "1234.56"),
    ("7f ff fb 2d c7", 10, 2, "-1234.56"),
    ("80 00 00 00 00", 10, 2, "0.00"),
    ("85 f5 e0 ff 63", 10, 2, "99999999.99"),
    ("80 00 00 01 00 00 00 02", 18, 9, "1.000000002"),
    ("81", 2, 0, "1"),
])
def test_decimal_reader(data, precision, scale, expected):
    from ewallet_etl.sources.binlog_decode import _decimal_reader

    raw = bytes.fromhex(data)
    value, end = _decimal_reader(precision, scale)(b"\x00" + raw, 1)
    assert (str(value), end) == (expected, 1 + len(raw))


def _datetime2(y, mo, d, h, mi, s) -> bytes:
    return ((1 << 39) | (y * 13 + mo) << 22 | d << 17 | h << 12 | mi << 6 | s).to_bytes(5, "big")


@pytest.mark.parametrize("fsp, fraction, micro", [
    (0, b"", 0), (6, (123456).to_bytes(3, "big"), 123456), (3, (1230).to_bytes(2, "big"), 123000),
    (1, (50).to_bytes(1, "big"), 500000), (6, (999999).to_bytes(3, "big"), 999999),
])
def test_datetime2_reader(fsp, fraction, micro):
    from datetime import datetime

    from ewallet_etl.sources.binlog_decode import _datetime2_reader

    raw = _datetime2(2025, 1, 2, 3, 4, 5) + fraction
    assert _datetime2_reader(fsp)(raw, 0) == (datetime(2025, 1, 2, 3, 4, 5, micro), len(raw))


def test_time_readers_reuse_a_value_only_for_the_same_bytes():
    """Rows of one statement share their times: the readers reuse the last value, and only
    for identical bytes (a zero date after a valid one, a new second, a new fraction)."""
    from ewallet_etl.sources.binlog_decode import _datetime2_reader, _timestamp2_reader

    read = _datetime2_reader(0)
    a, b = _datetime2(2025, 1, 2, 3, 4, 5), _datetime2(2025, 1, 2, 3, 4, 6)
    zero = bytes.fromhex("8000000000")
    buf = a + a + b + zero + a
    got, pos = [], 0
    for _ in range(5):
        value, pos = read(buf, pos)
        got.append(value)
    assert got == [datetime(2025, 1, 2, 3, 4, 5)] * 2 + [datetime(2025, 1, 2, 3, 4, 6), None,
                                                         datetime(2025, 1, 2, 3, 4, 5)]
    stamp = _timestamp2_reader(6)
    one, two = (1_735_689_600).to_bytes(4, "big"), (1_735_689_601).to_bytes(4, "big")
    frac = (7).to_bytes(3, "big"), (8).to_bytes(3, "big")
    buf = one + frac[0] + one + frac[0] + one + frac[1] + two + frac[1]
    got, pos = [], 0
    for _ in range(4):
        value, pos = stamp(buf, pos)
        got.append(value)
    assert got == [datetime(2025, 1, 1, 0, 0, 0, 7), datetime(2025, 1, 1, 0, 0, 0, 7),
                   datetime(2025, 1, 1, 0, 0, 0, 8), datetime(2025, 1, 1, 0, 0, 1, 8)]


def test_datetime2_reader_gives_none_for_a_zero_date():
    from ewallet_etl.sources.binlog_decode import _datetime2_reader

    assert _datetime2_reader(0)(bytes.fromhex("8000000000"), 0) == (None, 5)


# --- Query events: statements without row events (binlog_statements) -------------------------

TABLES = ("transactions", "users", "merchants")


@pytest.mark.parametrize("sql, schema, expected", [
    ("TRUNCATE TABLE transactions", "src", ("truncate", "TRUNCATE TABLE", "transactions")),
    ("truncate `users`", "src", ("truncate", "TRUNCATE TABLE", "users")),
    ("TRUNCATE TABLE `src`.`merchants` NOWAIT", "other", ("truncate", "TRUNCATE TABLE",
                                                          "merchants")),
    ("TRUNCATE TABLE other.transactions", "src", None),       # same name, another database
    ("TRUNCATE TABLE transactions", "other", None),           # unqualified: the event's schema
    ("TRUNCATE TABLE audit_log", "src", None),
    ("INSERT INTO transactions VALUES ('T', 1)", "src",
     ("stop", "statement-based INSERT", "transactions")),
    ("insert ignore into `src`.users (user_id) values (1)", "x",
     ("stop", "statement-based INSERT", "users")),
    ("INSERT INTO audit_log SELECT * FROM transactions", "src", None),  # reads, not writes
    ("REPLACE LOW_PRIORITY INTO merchants VALUES (1)", "src",
     ("stop", "statement-based REPLACE", "merchants")),
    ("UPDATE users SET name = 'transactions' WHERE user_id = 1", "src",
     ("stop", "statement-based UPDATE", "users")),
    ("UPDATE audit_log a JOIN transactions t ON t.transaction_id = a.id SET a.n = 1", "src",
     ("stop", "statement-based UPDATE", "transactions")),  # conservative: a joined table
    ("UPDATE audit_log SET note = 'users'", "src", None),  # a string is no table
    ("DELETE FROM transactions WHERE transaction_id = 'x'", "src",
     ("stop", "statement-based DELETE", "transactions")),
    ("DELETE t FROM transactions t JOIN users u USING (user_id)", "src",
     ("stop", "statement-based DELETE", "transactions")),
    ("/* app */ DELETE LOW_PRIORITY QUICK FROM merchants", "src",
     ("stop", "statement-based DELETE", "merchants")),
    ("LOAD DATA INFILE '/tmp/x' IGNORE INTO TABLE `transactions` FIELDS TERMINATED BY ','",
     "src", ("stop", "statement-based LOAD DATA", "transactions")),
    ("DROP TABLE `scratch`,`transactions` /* generated by server */", "src",
     ("stop", "DROP TABLE", "transactions")),
    ("DROP TABLE IF EXISTS audit_log", "src", None),
    ("DROP TEMPORARY TABLE IF EXISTS transactions", "src", None),
    ("RENAME TABLE merchants TO m_old, m_new TO merchants", "src",
     ("stop", "RENAME TABLE", "merchants")),
    ("RENAME TABLE m_new TO `src`.users", "other", ("stop", "RENAME TABLE", "users")),
    ("RENAME TABLE a TO b", "src", None),
    ("ALTER TABLE transactions ADD COLUMN note VARCHAR(20) NULL", "src", None),
    ("ALTER TABLE users MODIFY city VARCHAR(100) NULL", "src", None),
    ("ALTER TABLE users RENAME COLUMN city TO town", "src", None),
    ("ALTER TABLE users RENAME TO people", "src", ("stop", "ALTER TABLE ... RENAME", "users")),
    ("ALTER TABLE staging RENAME AS transactions", "src",
     ("stop", "ALTER TABLE ... RENAME", "transactions")),
    ("ALTER TABLE transactions EXCHANGE PARTITION p0 WITH TABLE t2", "src",
     ("stop", "ALTER TABLE ... EXCHANGE PARTITION", "transactions")),
    ("CREATE OR REPLACE TABLE merchants (merchant_id INT)", "src",
     ("stop", "CREATE OR REPLACE TABLE", "merchants")),
    ("CREATE TABLE IF NOT EXISTS transactions (a INT)", "src", None),
    ("DROP DATABASE `src`", "other", ("stop", "DROP DATABASE", "src")),
    ("DROP DATABASE other", "src", None),
    ("/*!40000 ALTER TABLE `transactions` DISABLE KEYS */", "src", None),
    ("/*!40101 TRUNCATE TABLE transactions */", "src",
     ("truncate", "TRUNCATE TABLE", "transactions")),  # an executable comment runs
    ("BEGIN", "src", None),
    ("COMMIT", "src", None),
])
def test_statement_verdicts(sql, schema, expected):
    from ewallet_etl.core.binlog_statements import classify

    verdict = classify(sql, schema, "src", TABLES)
    got = None if verdict is None else (verdict.action.value, verdict.kind, verdict.table)
    assert got == expected


def test_without_a_database_any_database_counts():
    from ewallet_etl.core.binlog_statements import classify

    assert classify("TRUNCATE TABLE x.users", "y", None, TABLES) is not None


@pytest.mark.parametrize("sql, expected", [
    ("XA COMMIT X'7832',X'',1", (True, (1, b"x2", b""))),
    ("XA ROLLBACK X'61',X'62',7", (False, (7, b"a", b"b"))),
    ("xa commit 'x2'", (True, (1, b"x2", b""))),
    ("XA COMMIT 'x2' ONE PHASE", None),
    ("XA END X'7832',X'',1", None),
    ("COMMIT", None),
])
def test_xa_resolutions(sql, expected):
    from ewallet_etl.core.binlog_statements import xa_resolution

    assert xa_resolution(sql) == expected


# --- XA: held from PREPARE to COMMIT, positions pinned at their start ------------------------

def _change(key: str, v: int):
    from ewallet_etl.core.events import ChangeEvent, Op

    return ChangeEvent(Op.INSERT, "transactions", key, {}, v)


def test_xa_rows_are_held_until_commit_and_dropped_on_rollback():
    from ewallet_etl.core.binlog_position import XaHold

    hold, a, b = XaHold(), (1, b"a", b""), (1, b"b", b"")
    p = [Position.of("binlog.000001", n) for n in (100, 200, 300, 400, 500)]
    assert hold.rows([_change("N0", 1)]) == [_change("N0", 1)]  # not in XA: passed on
    hold.begin(p[0])
    assert hold.rows([_change("A1", 2)]) == []
    assert hold.prepare(a, False, p[0]) == []
    assert hold.resume(p[1]) == p[0]  # a restart must read A1 again
    hold.begin(p[1])
    hold.rows([_change("B1", 3)])
    hold.prepare(b, False, p[1])
    assert hold.rows([_change("N1", 4)]) == [_change("N1", 4)]
    assert hold.resolve(b, commit=True) == [_change("B1", 3)]  # its own version
    assert hold.resume(p[3]) == p[0]
    assert hold.resolve(a, commit=False) == []
    assert hold.resume(p[4]) == p[4]
    assert hold.resolve(a, commit=True) == []  # unknown (already resolved): nothing


def test_xa_one_phase_releases_at_once():
    from ewallet_etl.core.binlog_position import XaHold

    hold = XaHold()
    hold.begin(Position.of("binlog.000001", 10))
    hold.rows([_change("A", 1)])
    assert hold.prepare((1, b"a", b""), True, Position.of("binlog.000001", 10)) == [
        _change("A", 1)]
    assert hold.prepared == {}


def test_an_xa_prepare_ends_its_event_group():
    tracker = BoundaryTracker()
    tracker.gtid(76)  # MariaDB: FL_PREPARED_XA | FL_ALLOW_PARALLEL | FL_TRANSACTIONAL
    assert tracker.query("XA END X'7831',X'',1") is False
    assert tracker.xid() is True  # XA_PREPARE
    tracker.gtid(141)  # FL_COMPLETED_XA | ... | FL_STANDALONE
    assert tracker.query("XA COMMIT X'7831',X'',1") is True


# --- TIMESTAMP(6) --------------------------------------------------------------------------

@pytest.mark.parametrize("fsp, seconds, fraction, expected", [
    (6, 1748790000, (123456).to_bytes(3, "big"), (2025, 6, 1, 15, 0, 0, 123456)),
    (0, 1748790000, b"", (2025, 6, 1, 15, 0, 0, 0)),
    (3, 2**31 - 1, (999 * 10).to_bytes(2, "big"), (2038, 1, 19, 3, 14, 7, 999000)),
    (6, 0, b"\x00\x00\x00", (1970, 1, 1, 0, 0, 0, 0)),  # the zero date, as in the library
])
def test_timestamp2_reader_is_utc_whatever_the_host_zone(monkeypatch, fsp, seconds, fraction,
                                                         expected):
    import time
    from datetime import datetime

    from ewallet_etl.sources.binlog_decode import _timestamp2_reader

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        raw = seconds.to_bytes(4, "big") + fraction
        assert _timestamp2_reader(fsp)(raw, 0) == (datetime(*expected), len(raw))
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_zero_timestamp_becomes_none_and_is_rejected():
    from datetime import datetime
    from types import SimpleNamespace

    from pymysqlreplication.constants import FIELD_TYPE

    from ewallet_etl.sources.binlog import row_changes

    event = _event("WriteRowsEvent", "users", [
        {"values": {"user_id": 1, "updated_at": datetime(1970, 1, 1, 0, 0, 0, 999999),
                    "created_at": datetime(2025, 1, 1)}}])
    event.columns = [SimpleNamespace(name="user_id", type=FIELD_TYPE.LONG),
                     SimpleNamespace(name="updated_at", type=FIELD_TYPE.TIMESTAMP2),
                     SimpleNamespace(name="created_at", type=FIELD_TYPE.TIMESTAMP2),
                     *(SimpleNamespace(name=n, type=FIELD_TYPE.VARCHAR)
                       for n in ("name", "email", "city"))]
    (change,) = row_changes(event, Position.of("binlog.000001", 4))
    assert change.row["updated_at"] is None
    assert change.row["created_at"] == datetime(2025, 1, 1)


@pytest.mark.parametrize(("value", "zero"), [
    (datetime(1970, 1, 1), True),  # TIMESTAMP 0, as both decoders give it
    (datetime(1970, 1, 1, 0, 0, 0, 500_000), True),  # 0 with a fraction: still the zero date
    (datetime(1970, 1, 1, 0, 0, 1), False),  # the first valid TIMESTAMP
    (datetime(2025, 1, 1), False),
    (datetime(1970, 1, 1, tzinfo=timezone.utc), False),  # aware: not a decoder's zero
    (None, False), ("1970-01-01 00:00:00", False),
])
def test_the_zero_timestamp_is_told_from_real_instants(value, zero):
    assert _is_zero_timestamp(value) is zero


def _mysql_decimal(unscaled: int, precision: int, scale: int) -> bytes:
    """MySQL's decimal2bin, written from its description: the integer digits in groups of 9
    from the point leftwards (the leftmost group shorter), the fraction in groups of 9 from the
    point rightwards (the last shorter), each group big endian in the fewest bytes; the sign
    bit flipped; a negative value with every byte inverted."""
    dig2bytes = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
    digits = str(abs(unscaled)).zfill(precision)
    whole, frac = digits[:precision - scale], digits[precision - scale:]
    int_rest = len(whole) % 9
    parts = ([(whole[:int_rest], dig2bytes[int_rest])] if int_rest else [])
    parts += [(whole[i:i + 9], 4) for i in range(int_rest, len(whole), 9)]
    parts += [(frac[i:i + 9], dig2bytes[len(frac[i:i + 9])] if len(frac[i:i + 9]) < 9 else 4)
              for i in range(0, scale, 9)]
    data = bytearray(b"".join(int(part).to_bytes(size, "big") for part, size in parts))
    data[0] ^= 0x80
    if unscaled < 0:
        data = bytearray(b ^ 0xFF for b in data)
    return bytes(data)


@given(st.data())
@hsettings(max_examples=300, deadline=None)
def test_decimal_reader_reads_every_precision_exactly(data):
    from ewallet_etl.sources.binlog_decode import _decimal_reader

    precision = data.draw(st.integers(1, 65))
    scale = data.draw(st.integers(0, min(precision, 30)))
    unscaled = data.draw(st.integers(-(10**precision - 1), 10**precision - 1))
    value = Decimal(unscaled).scaleb(-scale, Context(prec=70))
    raw = _mysql_decimal(unscaled, precision, scale)
    decoded, end = _decimal_reader(precision, scale)(b"\x07" + raw + b"\x09", 1)
    assert (decoded, end) == (value, 1 + len(raw))
    assert decoded.as_tuple().exponent == -scale  # "1.50" stays 1.50, as the column holds it
