"""chDB's own pull, the reference for the chDB engine: one process that opens a chDB folder,
creates fact_sales if missing (the project's DDL) and runs `INSERT ... SELECT ... FROM
mysql(...)` with the transform in SQL (bench/sql/pull.sql). Timed as a whole by bench/run.py,
like the pipeline.

    python bench/chdb_pull.py CHDB_PATH DATABASE MYSQL_DATABASE
"""

from __future__ import annotations

import sys

from common import ROOT, fact_ddl, mysql_table_function, pull_sql


def main(path: str, database: str, source_db: str) -> None:
    from chdb import session

    sess = session.Session(path)
    try:
        sess.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        sess.query(fact_ddl(database))
        sess.query(pull_sql(database, mysql_table_function(source_db), chdb=True))
    finally:
        sess.close()


if __name__ == "__main__":
    assert ROOT.is_dir()
    main(*sys.argv[1:4])
