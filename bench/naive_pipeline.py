"""The write-up's naive way, the floor to beat: fetch everything, transform row by row, insert
Python tuples. Same output as the pipeline (fact_sales with every status, the same surrogate
keys, categories, dates and versions, plus both dimensions), so the comparison is like for like.

    python bench/naive_pipeline.py SOURCE_DB WAREHOUSE_DB

mysql-connector `fetchall()` -> pandas DataFrame -> `Series.apply` per column ->
`client.execute("INSERT ... VALUES", list_of_tuples)` with clickhouse-driver. mysql-connector's
C extension is loaded on purpose (importing `_mysql_connector` before anything imports `ssl`;
otherwise it silently falls back to pure Python here and the baseline gets 1.4x slower): the
baseline is the stronger of the two. Set NAIVE_PURE_PYTHON=1 for the fallback.
"""

from __future__ import annotations

import os
import sys

if not os.environ.get("NAIVE_PURE_PYTHON"):
    import _mysql_connector  # noqa: F401  (see the docstring)

from datetime import datetime, timezone  # noqa: E402
from decimal import Decimal  # noqa: E402

import mysql.connector  # noqa: E402
import pandas as pd  # noqa: E402
from clickhouse_driver import Client  # noqa: E402
from common import ROOT, ClickHouseServer, Settings  # noqa: E402

MASK = (1 << 64) - 1


def surrogate_key(natural_id: int, domain: int) -> int:
    """The pipeline's SplitMix64 key, one Python int at a time."""
    z = (natural_id ^ (domain << 60)) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def categorize(amount: Decimal) -> str:
    if amount < Decimal("50000"):
        return "Low"
    if amount < Decimal("100000"):
        return "Medium"
    return "High"


def micros(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1_000_000)


def extract(source_db: str, sql: str) -> pd.DataFrame:
    s = Settings.from_env()
    conn = mysql.connector.connect(host=s.mysql_host, port=s.mysql_port, user=s.mysql_user,
                                   password=s.mysql_password, database=source_db)
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    df = pd.DataFrame(rows, columns=[d[0] for d in cur.description])
    conn.close()
    return df


def dimension(df: pd.DataFrame, id_col: str, domain: int, extra: list[str]) -> list[tuple]:
    df["key"] = df[id_col].apply(lambda i: surrogate_key(int(i), domain))
    df["_version"] = df["updated_at"].apply(micros)
    df["updated_at"] = df["updated_at"].apply(lambda t: t.replace(microsecond=0))
    df["_deleted"] = 0
    return list(df[["key", id_col, "name", *extra, "updated_at", "_version", "_deleted"]]
                .itertuples(index=False, name=None))


def main(source_db: str, database: str) -> None:
    server = ClickHouseServer.from_env()
    client = Client(host=server.host, port=server.port, user=server.user,
                    password=server.password, send_receive_timeout=600)
    client.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    ddl = (ROOT / "DDL-Clickhouse.sql").read_text().replace("analytics_dw", database)
    for statement in ddl.split(";\n"):
        body = "\n".join(ln for ln in statement.splitlines() if not ln.startswith("--")).strip()
        if body:
            client.execute(body)

    users = extract(source_db, "SELECT user_id, name, email, city, updated_at FROM users")
    client.execute(f"INSERT INTO {database}.dim_users VALUES",
                   dimension(users, "user_id", 1, ["email", "city"]))
    merchants = extract(source_db,
                        "SELECT merchant_id, name, category, city, updated_at FROM merchants")
    client.execute(f"INSERT INTO {database}.dim_merchants VALUES",
                   dimension(merchants, "merchant_id", 2, ["category", "city"]))

    df = extract(source_db, "SELECT transaction_id, user_id, merchant_id, amount, status, "
                            "transaction_time, updated_at FROM transactions")
    df["user_key"] = df["user_id"].apply(lambda i: surrogate_key(int(i), 1))
    df["merchant_key"] = df["merchant_id"].apply(lambda i: surrogate_key(int(i), 2))
    df["amount_category"] = df["amount"].apply(categorize)
    df["transaction_date"] = df["transaction_time"].apply(lambda t: t.date())
    df["_version"] = df["updated_at"].apply(micros)
    df["updated_at"] = df["updated_at"].apply(lambda t: t.replace(microsecond=0))
    df["_deleted"] = 0
    columns = ["transaction_id", "user_key", "merchant_key", "amount", "amount_category",
               "status", "transaction_time", "transaction_date", "updated_at", "_version",
               "_deleted"]
    rows = list(df[columns].itertuples(index=False, name=None))
    client.execute(f"INSERT INTO {database}.fact_sales ({', '.join(columns)}) VALUES", rows)
    client.disconnect()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
