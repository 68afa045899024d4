"""The benchmark's data set, generated inside MariaDB (no rows cross the network).

10,000 users, 1,000 merchants and N transactions over 90 days (2025-01-01 .. 2025-03-31):
about 90% SUCCESS, 6% FAILED, 3% PENDING, 1% REFUNDED; amounts log-normal (median ~40,000 IDR,
so roughly 58% Low / 23% Medium / 19% High), clipped to the source's DECIMAL(10,2).

The schema is the project's own `DDL-MySQL-Source.sql` (its seed rows are removed). Rows come
from MariaDB's SEQUENCE engine (`seq_1_to_N`) with pseudo-random values derived from `CRC32` of
the row number, so the same N always gives the same table, and the bulk load is kept out of the
binlog (`sql_log_bin = 0`) so binlog readers on the shared server do not replay it. The
incremental changes (`mutate`) do go to the binlog: they are the workload a CDC reader sees.
"""

from __future__ import annotations

from common import ROOT, mysql_conn  # first: puts the repository on sys.path

from ewallet_etl.warehouse import split_statements  # noqa: E402

SOURCE_DDL = ROOT / "DDL-MySQL-Source.sql"
N_USERS, N_MERCHANTS = 10_000, 1_000

# u(salt): a uniform [0, 1) value per row, stable across runs (CRC32 of salt + row number).
U = "(CRC32(CONCAT('{salt}', seq)) / 4294967296)"

USERS = f"""
INSERT INTO users (user_id, name, email, city, created_at, updated_at)
SELECT seq,
       CONCAT(ELT(1 + seq % 8, 'Andi', 'Budi', 'Citra', 'Dewi', 'Éko', 'Fitri', 'Gedé', 'Hana'),
              ' ', ELT(1 + (seq DIV 8) % 5, 'Pratama', 'Santoso', 'Lestari', 'Wijaya', 'Nugroho'),
              ' ', seq),
       CONCAT('user', seq, '@example.com'),
       ELT(1 + seq % 5, 'Jakarta', 'Bandung', 'Surabaya', 'Medan', 'Denpasar'),
       '2024-12-01', TIMESTAMP('2024-12-01') + INTERVAL seq SECOND
FROM seq_1_to_{N_USERS}
"""

MERCHANTS = f"""
INSERT INTO merchants (merchant_id, name, category, city, created_at, updated_at)
SELECT seq, CONCAT('Merchant ', seq),
       ELT(1 + seq % 6, 'Food & Beverage', 'E-commerce', 'Transport', 'Bills', 'Games',
           'Travel'),
       ELT(1 + seq % 5, 'Jakarta', 'Bandung', 'Surabaya', 'Medan', 'Denpasar'),
       '2024-12-01', TIMESTAMP('2024-12-01') + INTERVAL seq SECOND
FROM seq_1_to_{N_MERCHANTS}
"""

# Box-Muller on two row uniforms: amount = exp(ln(40000) + 1.0 * N(0, 1)).
_NORMAL = f"SQRT(-2 * LN(1 - {U.format(salt='a')})) * COS(2 * PI() * {U.format(salt='b')})"
_STATUS_PCT = "CRC32(CONCAT('s', seq)) % 100"
_FACT_VALUES = f"""CONCAT('TX', LPAD(seq, 10, '0')),
       1 + FLOOR({U.format(salt='u')} * {N_USERS}),
       1 + FLOOR({U.format(salt='m')} * {N_MERCHANTS}),
       LEAST(GREATEST(ROUND(EXP(10.5966 + {_NORMAL}), 2), 1.00), 99999999.99),
       ELT(1 + ({_STATUS_PCT} >= 90) + ({_STATUS_PCT} >= 96) + ({_STATUS_PCT} >= 99),
           'SUCCESS', 'FAILED', 'PENDING', 'REFUNDED'),
       t"""
_TIMES = f"""(SELECT seq, TIMESTAMP('2025-01-01') + INTERVAL FLOOR({U.format(salt='t')} * 7776000)
              SECOND AS t
      FROM seq_{{first}}_to_{{last}}) AS s"""
# The bulk rows carry their own change times (within 10 minutes of the transaction).
TRANSACTIONS = f"""
INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status,
                          transaction_time, created_at, updated_at)
SELECT {_FACT_VALUES}, t, t + INTERVAL FLOOR({U.format(salt='d')} * 600000000) MICROSECOND
FROM {_TIMES}
"""
# New rows of the incremental workload get the database's own change time, like any insert.
NEW_TRANSACTIONS = f"""
INSERT INTO transactions (transaction_id, user_id, merchant_id, amount, status,
                          transaction_time)
SELECT {_FACT_VALUES}
FROM {_TIMES}
"""
# The changes both workloads make: PENDING -> SUCCESS, SUCCESS -> REFUNDED, and a cent more, on
# rows picked by a salted hash (params: salt, how many).
PICK_FOR_UPDATE = """
SELECT transaction_id FROM transactions WHERE status IN ('PENDING', 'SUCCESS')
ORDER BY CRC32(CONCAT(%s, transaction_id)) LIMIT %s"""
_CHANGE = """
UPDATE transactions
SET status = IF(status = 'PENDING', 'SUCCESS', 'REFUNDED'), amount = amount + 0.01"""
UPDATES = (f"{_CHANGE}\n"
           f"WHERE transaction_id IN (SELECT transaction_id FROM ({PICK_FOR_UPDATE}) AS pick)")
UPDATE_IDS = _CHANGE + "\nWHERE transaction_id IN ({marks})"  # marks: one %s per id


def generate(database: str, n_rows: int) -> None:
    """(Re)create `database` with the source schema and the data set of `n_rows` transactions."""
    conn = mysql_conn(None)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 "
                    "COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE `{database}`")
        cur.execute("SET SESSION sql_log_bin = 0, foreign_key_checks = 0, unique_checks = 0")
        for statement in split_statements(SOURCE_DDL.read_text()):
            cur.execute(statement.rstrip(";"))
        for table in ("transactions", "users", "merchants"):
            cur.execute(f"DELETE FROM {table}")  # the DDL's seed rows
        cur.execute(USERS)
        cur.execute(MERCHANTS)
        cur.execute(TRANSACTIONS.format(first=1, last=int(n_rows)))
        cur.execute("ANALYZE TABLE users, merchants, transactions")
        cur.fetchall()
    conn.close()


def mutate(database: str, n_updates: int, n_inserts: int, first_new: int, salt: str = "") -> None:
    """The incremental workload: `n_updates` PENDING/SUCCESS rows (picked by `salt`) change
    status and amount (the database moves their updated_at to now), and `n_inserts` new
    transactions arrive (row numbers from `first_new`)."""
    conn = mysql_conn(database)
    with conn.cursor() as cur:
        cur.execute(UPDATES, (salt, n_updates))
        cur.execute(NEW_TRANSACTIONS.format(first=first_new, last=first_new + n_inserts - 1))
    conn.close()


def drop_new(database: str, first_new: int) -> None:
    """Delete the transactions `mutate` inserted from row number `first_new` on (ids have one
    width: they compare as text), so a kept source has its generated count again."""
    conn = mysql_conn(database)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM transactions WHERE transaction_id >= CONCAT('TX', LPAD(%s, 10, "
                    "'0'))", (first_new,))
    conn.close()


def source_totals(database: str) -> dict[str, object]:
    """What every correct load must reproduce: rows, sum of amounts, sales."""
    conn = mysql_conn(database)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), CAST(SUM(amount) AS CHAR), SUM(status = 'SUCCESS') "
                    "FROM transactions")
        rows, total, sales = cur.fetchone()
    conn.close()
    return {"rows": int(rows), "sum_amount": str(total), "sales": int(sales)}


def binlog_changes(database: str, n_changes: int, first_new: int, per_statement: int) -> None:
    """A binlog CDC workload: n/2 new transactions, then n/2 updates of existing ones, written
    to the binlog (unlike the bulk load) as statements of `per_statement` rows each (1: one row
    event per statement, the shape of an OLTP application), committed every 100 rows."""
    conn = mysql_conn(database)
    inserts = n_changes // 2
    with conn.cursor() as cur:
        cur.execute(PICK_FOR_UPDATE, ("binlog", n_changes - inserts))
        picked = [row[0] for row in cur.fetchall()]
        statements = [
            (NEW_TRANSACTIONS.format(first=first_new + start,
                                     last=first_new + min(start + per_statement, inserts) - 1),
             None)
            for start in range(0, inserts, per_statement)
        ] + [
            (UPDATE_IDS.format(marks=", ".join(["%s"] * len(ids))), ids)
            for ids in (picked[start:start + per_statement]
                        for start in range(0, len(picked), per_statement))
        ]
        cur.execute("START TRANSACTION")
        for n, (sql, params) in enumerate(statements, start=1):
            cur.execute(sql, params)
            if n * per_statement % 100 == 0:
                cur.execute("COMMIT")
                cur.execute("START TRANSACTION")
        cur.execute("COMMIT")
    conn.close()
