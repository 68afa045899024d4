"""`source_ids.ExistingIds` against a real MariaDB: which users a chunk refers to exist, asked
once per id and run (the extract no longer joins), with orphans found and re-asked."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ewallet_etl.config import Settings
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.sources.mysql_ids import DENSE_IDS, IDS_PER_QUERY, ExistingIds
from tests.helpers import mysql_exec, settings_for

pytestmark = pytest.mark.integration


def _selects(conn) -> int:
    """SELECT statements this session has run (SHOW is not counted as one)."""
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Com_select'")
        return int(cur.fetchone()[1])


@pytest.fixture
def conn(source_db: str):
    settings: Settings = settings_for(source_db, None)
    connection = source_mysql.connect(settings)
    yield connection
    connection.close()


def test_found_flags_orphans_and_nulls(conn):
    users = ExistingIds(conn, "user_id")  # the seed has users 1, 2, 3
    ids = pa.chunked_array([pa.array([1, 3, 7, None, 2, 7], pa.uint32())])
    assert users.found(ids).tolist() == [1, 1, 0, 0, 1, 0]


def test_known_ids_are_not_asked_again_but_missing_ones_are(conn, source_db: str):
    users = ExistingIds(conn, "user_id")
    ids = pa.array([1, 2, 3, 9], pa.uint32())
    assert users.found(ids).tolist() == [1, 1, 1, 0]
    before = _selects(conn)
    assert users.found(pa.array([3, 1, 2], pa.uint32())).tolist() == [1, 1, 1]
    assert _selects(conn) == before  # all known: no question asked
    mysql_exec(source_db, "INSERT INTO users (user_id, name, email, city) "
                          "VALUES (9, 'Late', 'late@example.com', 'Medan')")
    assert users.found(ids).tolist() == [1, 1, 1, 1]  # the orphan was asked again: now found


def test_many_ids_are_asked_in_bounded_statements(conn, source_db: str):
    count = IDS_PER_QUERY * 2 + 17
    mysql_exec(source_db, "INSERT INTO merchants (merchant_id, name, category, city) "
                          "SELECT seq, CONCAT('M', seq), 'Retail', 'Jakarta' "
                          "FROM seq_100_to_20000 WHERE seq < %s", (100 + count,))
    merchants = ExistingIds(conn, "merchant_id")
    wanted = pa.array(list(range(100, 100 + count)) + [5], pa.uint32())  # 5: no such merchant
    before = _selects(conn)
    assert merchants.found(wanted).tolist() == [1] * count + [0]
    # three COUNT(*) statements (5,000 + 5,000 + 18 ids); the one holding id 5 comes back
    # short, so its ids are listed: four SELECTs in all
    assert _selects(conn) - before == 3 + 1


@pytest.mark.parametrize("big", [DENSE_IDS, 2**32 - 2])  # user_id: INT UNSIGNED
def test_large_ids_take_the_sorted_path_and_agree_with_small_ones(conn, source_db: str, big):
    mysql_exec(source_db, "INSERT INTO users (user_id, name, email, city) "
                          "VALUES (%s, 'Big', 'big@example.com', 'Medan')", (big,))
    users = ExistingIds(conn, "user_id")
    assert users.found(pa.array([1, 2, 9], pa.uint64())).tolist() == [1, 1, 0]  # flags
    mixed = pa.array([big, 1, big + 1, None, 9], pa.uint64())  # no user big + 1, nor 9
    assert users.found(mixed).tolist() == [1, 1, 0, 0, 0]
    assert users.found(pa.array([2, 9, 3], pa.uint64())).tolist() == [1, 0, 1]
