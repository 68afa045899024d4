"""dlt, the "what a user would pick" anchor: `sql_table(backend="pyarrow")` (SQLAlchemy +
PyMySQL) -> the pipeline's own transform on each Arrow batch -> duckdb.

    python bench/dlt_pipeline.py SOURCE_DB WORK_DIR

duckdb, not ClickHouse: dlt's ClickHouse destination cannot create tables on 18.16 (it emits
`NOT NULL` column syntax the server rejects). So this measures dlt's extract + normalize + load
machinery with the same transform, into the fastest destination it has. Telemetry is off.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from urllib.parse import quote

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
import pyarrow as pa  # noqa: E402
from common import Settings  # noqa: E402
from dlt.sources.sql_database import sql_table  # noqa: E402

from ewallet_etl.core import transform  # noqa: E402

NOW = datetime.now(timezone.utc)


def facts(batch: pa.Table) -> pa.Table:
    # As connectorx reads them: the amount as decimal128(38, 10) (transform.py types its bound
    # scalars with the input's type, which DECIMAL(10, 2) cannot hold); the foreign keys hold
    # in this source, so every dimension row exists.
    amount = batch.column("amount").cast(pa.decimal128(38, 10))
    batch = batch.set_column(batch.schema.get_field_index("amount"), "amount", amount)
    ones = pa.array([1] * batch.num_rows, pa.int32())
    batch = batch.append_column("user_found", ones).append_column("merchant_found", ones)
    return transform.transform_transactions(batch)[0]


def main(source_db: str, work_dir: str) -> None:
    s = Settings.from_env()
    url = (f"mysql+pymysql://{quote(s.mysql_user)}:{quote(s.mysql_password)}@"
           f"{s.mysql_host}:{s.mysql_port}/{source_db}")
    source = sql_table(credentials=url, table="transactions", backend="pyarrow",
                       chunk_size=100_000)

    # A transformer, not add_map: the reflected source schema would otherwise be imposed on
    # the transformed batches. UInt64 keys: dlt's "wei" (a 38-digit decimal in duckdb), since
    # dlt has no unsigned 64-bit type.
    @dlt.transformer(name="fact_sales", columns={"user_key": {"data_type": "wei"},
                                                 "merchant_key": {"data_type": "wei"}})
    def fact_sales(batch: pa.Table):  # type: ignore[no-untyped-def]
        yield facts(batch)

    pipeline = dlt.pipeline(pipeline_name="ewallet_bench", pipelines_dir=work_dir,
                            destination=dlt.destinations.duckdb(f"{work_dir}/warehouse.duckdb"),
                            dataset_name="bench")
    pipeline.run(source | fact_sales, write_disposition="replace")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
