"""`ewallet-etl init` on a source database of your own: it says what is missing, creates only
the pipeline's own objects with --apply, and the batch then loads from it. Both engines."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ewallet_etl.cli import init_main
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.reconcile import compare
from tests.helpers import as_decimal, env_for, mysql_admin, mysql_exec

pytestmark = pytest.mark.integration

YOUR_SCHEMA = [  # no updated_at on two tables, a DATETIME one on the third, no checkpoint
    "DROP TABLE transactions", "DROP TABLE users", "DROP TABLE merchants", "DROP TABLE checkpoint",
    "CREATE TABLE users (user_id INT UNSIGNED PRIMARY KEY, name VARCHAR(100) NOT NULL, "
    "email VARCHAR(255) NOT NULL, city VARCHAR(100) NOT NULL)",
    "CREATE TABLE merchants (merchant_id INT UNSIGNED PRIMARY KEY, name VARCHAR(100) NOT NULL, "
    "category VARCHAR(50) NOT NULL, city VARCHAR(100) NOT NULL, "
    "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    "CREATE TABLE transactions (transaction_id VARCHAR(64) PRIMARY KEY, user_id INT UNSIGNED, "
    "merchant_id INT UNSIGNED, amount DECIMAL(10,2), status VARCHAR(16), "
    "transaction_time DATETIME)",
    "INSERT INTO users VALUES (1, 'Andi', 'a@x', 'Jakarta')",
    "INSERT INTO merchants (merchant_id, name, category, city) VALUES (1, 'Kopi', 'F&B', 'Jkt')",
    "INSERT INTO transactions VALUES ('T1', 1, 1, 12.50, 'SUCCESS', '2025-01-10 08:00:00')",
]


def init(settings, monkeypatch, *args: str) -> int:
    for name, value in env_for(settings).items():
        monkeypatch.setenv(name, value)
    return init_main(list(args))


def test_init_says_what_is_missing_and_apply_makes_the_source_ready(settings, wh, monkeypatch,
                                                                     capsys):
    db = settings.mysql_database
    conn = mysql_admin(db)
    with conn.cursor() as cur:
        cur.execute("SET foreign_key_checks = 0")
        for statement in YOUR_SCHEMA:
            cur.execute(statement)
    conn.close()

    assert init(settings, monkeypatch) == 2
    said = capsys.readouterr().out
    for missing in ("users.updated_at is missing", "merchants.updated_at is DATETIME",
                    "transactions has no index starting with updated_at",
                    "table checkpoint is missing"):
        assert missing in said
    assert mysql_exec(db, "SHOW TABLES LIKE 'checkpoint'") == []  # nothing was changed

    assert init(settings, monkeypatch, "--apply") == 0
    assert "ready:" in capsys.readouterr().out
    assert mysql_exec(db, "SELECT COUNT(*) FROM transactions") == [(1,)]  # the data is untouched

    report = run_batch(settings)
    assert (report.status, report.rows_loaded) == ("success", 1)
    assert [(t, as_decimal(a)) for t, a in wh.query(
        "SELECT transaction_id, amount FROM analytics_dw.v_fact_sales")] == [("T1",
                                                                              Decimal("12.50"))]
    assert compare(settings).ok


def test_a_missing_column_is_reported_and_left_to_the_owner(settings, monkeypatch, capsys):
    mysql_exec(settings.mysql_database, "ALTER TABLE users DROP COLUMN city")
    assert init(settings, monkeypatch, "--apply") == 2
    said = capsys.readouterr().out
    assert "missing: users.city is missing" in said and "yours to add" in said
