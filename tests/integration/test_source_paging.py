"""A whole-table read pages through the primary key (`source_mysql.stream` with a key).

connectorx reads a statement's rows ahead of its consumer without bound; these tests show
that a paged read holds at most one page ahead (what MariaDB has sent), and that its pages
cover every row exactly once, in chunks of at most `chunk_rows`, whatever the keys look like.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.sources import mysql as source_mysql
from tests.helpers import (
    generate_transactions,
    mysql_admin,
    mysql_exec,
    settings_for,
    source_totals,
    warehouse_target,
    warehouse_totals,
)

EVERYTHING = {"low": datetime(1970, 1, 1, tzinfo=timezone.utc),
              "high": datetime(2100, 1, 1, tzinfo=timezone.utc)}
# Keys that quoting, collation or a prefix comparison could get wrong.
ODD_KEYS = ["it's", 'say "hi"', "back\\slash", "100%", "p%(after)s", "ümlaut", "日本",
            "trailing space ", " leading", "Z", "z-", "a", "ab", "abc\tdef"]


def _settings(source_db: str, chunk_rows: int):
    target = warehouse_target("clickhouse-server", "unused", None)
    return settings_for(source_db, target, chunk_rows=chunk_rows)


def _read_ids(settings, key: str | None) -> tuple[list[str], list[int]]:
    ids, sizes = [], []
    for chunk in source_mysql.stream(settings, source_mysql.TRANSACTIONS_SCAN_SQL, EVERYTHING,
                                     key):
        ids += chunk.column("transaction_id").to_pylist()
        sizes.append(chunk.num_rows)
    return ids, sizes


def test_pages_cover_every_row_once(source_db):
    generate_transactions(source_db, 2_345)
    for n, tx in enumerate(ODD_KEYS):
        mysql_exec(source_db, (
            "INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status, "
            "transaction_time) VALUES (%s, 1, 1, %s, 'SUCCESS', '2025-01-05 10:00:00')"
        ), (tx, n + 1))
    rows = mysql_exec(source_db, "SELECT transaction_id FROM transactions")
    expected = sorted(r[0] for r in rows)
    settings = _settings(source_db, chunk_rows=50)  # pages of 100 rows: 24 of them

    ids, sizes = _read_ids(settings, source_mysql.TRANSACTIONS_KEY)

    assert len(ids) == len(set(ids)) == len(expected) == 2_345 + len(ODD_KEYS) + 4
    assert sorted(ids) == expected
    assert max(sizes) == 50 and sum(sizes) == len(expected)


def test_a_full_last_page_ends_the_read(source_db):
    """A table of a whole number of pages: the statement after the last finds nothing and the
    read ends."""
    mysql_exec(source_db, "DELETE FROM transactions")
    generate_transactions(source_db, 400)
    ids, sizes = _read_ids(_settings(source_db, chunk_rows=50), source_mysql.TRANSACTIONS_KEY)
    assert len(set(ids)) == len(ids) == 400 and sizes == [50] * 8


def _rows_sent() -> int:
    conn = mysql_admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Rows_sent'")
            return int(cur.fetchone()[1])
    finally:
        conn.close()


@pytest.mark.parametrize("key", [source_mysql.TRANSACTIONS_KEY, None])
def test_a_paged_read_holds_one_page_ahead(source_db, key):
    """The consumer takes one chunk and waits: MariaDB has sent at most one page meanwhile.
    Unpaged (key None), connectorx reads the whole table ahead: the contrast the test needs."""
    generate_transactions(source_db, 20_000)
    settings = _settings(source_db, chunk_rows=500)
    page_rows = 500 * source_mysql.PAGE_CHUNKS
    assert page_rows <= 20_000 // 4  # the table spans several pages, or this shows nothing
    chunks = source_mysql.stream(settings, source_mysql.TRANSACTIONS_SCAN_SQL, EVERYTHING, key)
    before = _rows_sent()
    first = next(chunks)
    time.sleep(1.0)  # ample time for connectorx to read all 20,000 rows, were it allowed
    sent = _rows_sent() - before - 1  # our own status query sends one row
    chunks.close()
    assert first.num_rows == 500
    if key is None:
        assert sent >= 20_000
    else:
        assert sent <= page_rows + 10  # + the few rows of connectorx's own session set-up


def test_only_listed_keys_are_paged_on(source_db):
    settings = _settings(source_db, chunk_rows=50)
    with pytest.raises(ValueError, match="not a key"):
        next(source_mysql.stream(settings, source_mysql.TRANSACTIONS_SCAN_SQL, EVERYTHING,
                                 "t.amount; DROP TABLE transactions"))


def test_each_engine_first_load_and_full_refresh_read_as_it_asks(settings, wh, monkeypatch):
    """chDB takes rows more slowly than connectorx reads them, so its whole-table reads run in
    pages; the server's in one statement. Either way every row lands once, to the cent."""
    generate_transactions(settings.mysql_database, 2_345)  # and the fixture's 4: 2,349 rows
    settings = replace(settings, chunk_rows=50)
    page_rows = 50 * source_mysql.PAGE_CHUNKS
    pages = 2_349 // page_rows + 1  # the last one short (or empty), which ends the read
    statements: list[str] = []
    opened = source_mysql._open

    def counting_open(scratch, settings, sql, params):
        if "FROM transactions" in sql:
            statements.append(sql)
        return opened(scratch, settings, sql, params)

    monkeypatch.setattr(source_mysql, "_open", counting_open)
    for full_refresh in (False, True):
        statements.clear()
        report = run_batch(settings, full_refresh=full_refresh)
        assert report.rows_read == 2_349
        assert warehouse_totals(wh) == source_totals(settings.mysql_database)
        assert len(statements) == (pages if wh.paged_reads else 1)
        assert all((f"LIMIT {page_rows}" in sql) == wh.paged_reads for sql in statements)
    assert wh.paged_reads == (wh.engine == "chdb")
