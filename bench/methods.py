"""What the bench runs: each method is one child process, timed as a whole (interpreter start,
imports, connections and DDL included), with its peak RSS and CPU time from `os.wait4`.

A method has an untimed `prep` (drop what the last run left, so every run does the same work),
the timed command, and an untimed `check` that reads back what it loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable

from common import (
    BASELINE_PYTHON,
    PYTHON,
    ROOT,
    SERVER_ONLY_PYTHON,
    ClickHouseServer,
    baseline_has,
    clickhouse_client,
    fact_ddl,
    mysql_conn,
    mysql_table_function,
    pull_sql,
)

BENCH = ROOT / "bench"


@dataclass
class Run:
    wall: float
    peak_rss_mib: float
    cpu: float
    returncode: int
    stderr: str = ""

    @property
    def rows_read(self) -> int | None:
        """`read=N` from the pipeline's (or CDC's) summary line, when it printed one."""
        found = READ.findall(self.stderr)
        return int(found[-1]) if found else None


READ = re.compile(r"\bread=(\d+)")


@dataclass
class Method:
    name: str  # e.g. "full load (pipeline)"
    engine: str  # "clickhouse-server", "chdb", "source", "duckdb"
    group: str  # "full", "incremental", "cdc", "scale"
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    prep: Callable[[], None] | None = None
    check: Callable[[], dict] | None = None
    rows: int = 0  # rows (or events) the method moves, for rows/s
    runs: list[Run] = field(default_factory=list)
    checked: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.engine}: {self.name}"


GNU_TIME = Path("/usr/bin/time")
RSS_SOURCE = ("GNU time (%M)" if GNU_TIME.exists()
              else "os.wait4 (biased: includes the size of the bench process at fork)")


def timed(argv: list[str], env: dict[str, str]) -> Run:
    """Run one child to completion: wall seconds, its own peak RSS and CPU.

    Through GNU time when installed (apt package `time`): on Linux a process's peak RSS keeps
    the high-water mark of the memory it was forked from, so a child forked straight from this
    (large) Python process would report at least this process's size. Without GNU time, the
    figures come from os.wait4 and carry that bias (`RSS_SOURCE`, in the JSON).
    """
    with tempfile.TemporaryDirectory() as tmp:
        err_path, usage_path = Path(tmp) / "stderr", Path(tmp) / "usage"
        wrapped = ([str(GNU_TIME), "-q", "-f", "%M %U %S", "-o", str(usage_path), *argv]
                   if GNU_TIME.exists() else argv)
        with open(err_path, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(wrapped, env={**os.environ, **env},
                                    stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        text = err_path.read_text(errors="replace")
        rss_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        if wrapped is not argv and usage_path.exists():
            fields = usage_path.read_text().split()[-3:]
            rss_kib, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
    return Run(wall, rss_kib / 1024, cpu, proc.returncode, text[-4000:])


def chdb_sql(path: Path, *statements: str) -> str:
    """Statements on a chDB folder, in a child process (the folder admits one process)."""
    out = subprocess.run([PYTHON, str(BENCH / "chdb_admin.py"), str(path), *statements],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return out.stdout


def totals_sql(table: str) -> str:
    return (f"SELECT count(), toString(sum(amount)), countIf(status = 'SUCCESS') "
            f"FROM {table}")


def as_totals(row: list | tuple) -> dict:
    cents = Decimal(str(row[1] or 0)).quantize(Decimal("0.01"))  # engines print 1.9 or 1.90
    return {"rows": int(row[0]), "sum_amount": str(cents), "sales": int(row[2])}


def tsv_totals(text: str) -> dict:
    return as_totals(text.strip().split("\t"))


@dataclass(frozen=True)
class Ctx:
    """Names and places of one bench run."""

    prefix: str  # every database and folder the bench creates starts with it
    source_db: str
    rows: int
    server: ClickHouseServer
    work: Path  # chDB folders, dlt state, the CDC file
    mysql_url_env: dict[str, str]

    def db(self, role: str) -> str:
        """A warehouse database of this run: dw, ref, naive or cdc."""
        return f"{self.prefix}_{role}"

    def server_url(self, database: str) -> str:
        return self.server.url(database)

    def chdb_url(self, folder: str, database: str) -> str:
        return f"chdb://{self.work / folder}?database={database}"


# The initial load (no checkpoint yet: everything, into an empty warehouse), and the reload
# over a loaded warehouse, which also sweeps hard deletes (a per-day reconcile of source and
# warehouse, `reconcile.sweep_deletes`).
FIRST_LOAD = "full load (etl_pipeline.py, first run)"
FULL_REFRESH = "full refresh (etl_pipeline.py --full-refresh)"
SERVER_ONLY_LOAD = "full load, server-only install (no chDB, no pandas)"
# The pipeline's reader into its writer with nothing between (bench/floor_raw_copy.py).
RAW_FLOOR = "floor: the pipeline's reader -> its writer, raw copy, no transform"
# Its table: the columns as the full load reads them (transaction_time as the number
# YYYYMMDDhhmmss, updated_at in microseconds since the epoch).
RAW_FLOOR_DDL = """CREATE TABLE {table} (
    transaction_id String, user_id UInt32, merchant_id UInt32, amount Decimal(10, 2),
    status String, transaction_time UInt64, updated_at UInt64
) ENGINE = MergeTree ORDER BY transaction_id"""


def reset_checkpoint(source_db: str, pipeline: str) -> None:
    conn = mysql_conn(source_db)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM checkpoint WHERE pipeline_name = %s", (pipeline,))
    conn.close()


def pipeline_env(ctx: Ctx, url: str, pipeline: str, source_db: str | None = None) -> dict:
    return {**ctx.mysql_url_env, "MYSQL_DATABASE": source_db or ctx.source_db,
            "CLICKHOUSE_URL": url, "ETL_PIPELINE_NAME": pipeline, "LOG_LEVEL": "INFO",
            "ETL_OVERLAP_SECONDS": "0"}


def server_methods(ctx: Ctx, source_db: str, rows: int, naive: bool) -> list[Method]:
    client = clickhouse_client(ctx.server)
    ref, dw, naive_db = ctx.db("ref"), ctx.db("dw"), ctx.db("naive")
    pull = pull_sql(ref, mysql_table_function(source_db), chdb=False)

    def prep_ref() -> None:
        client.execute(f"CREATE DATABASE IF NOT EXISTS {ref}")
        client.execute(f"DROP TABLE IF EXISTS {ref}.fact_sales")
        client.execute(fact_ddl(ref))

    env = pipeline_env(ctx, ctx.server_url(dw), "bench_server", source_db)
    totals = lambda: as_totals(client.execute(totals_sql(f"{dw}.v_fact_sales"))[0])  # noqa: E731

    def prep_first() -> None:
        client.execute(f"DROP DATABASE IF EXISTS {dw}")
        reset_checkpoint(source_db, "bench_server")

    methods = [
        Method("reference: INSERT ... SELECT FROM mysql()", "clickhouse-server", "full",
               [*ctx.server.client_args(), "--query", pull], prep=prep_ref, rows=rows,
               check=lambda: as_totals(client.execute(
                   totals_sql(f"{ref}.fact_sales FINAL"))[0])),
        Method(FIRST_LOAD, "clickhouse-server", "full", [PYTHON, "etl_pipeline.py"], env,
               prep=prep_first, rows=rows, check=totals),
        Method(FULL_REFRESH, "clickhouse-server", "full",
               [PYTHON, "etl_pipeline.py", "--full-refresh"], env, rows=rows, check=totals),
    ]
    raw = f"{ctx.db('peers')}.floor_raw"

    def prep_raw() -> None:
        client.execute(f"CREATE DATABASE IF NOT EXISTS {ctx.db('peers')}")
        client.execute(f"DROP TABLE IF EXISTS {raw}")
        client.execute(RAW_FLOOR_DDL.format(table=raw))

    methods.append(Method(RAW_FLOOR, "clickhouse-server", "full",
                          [PYTHON, str(BENCH / "floor_raw_copy.py"), raw], env,
                          prep=prep_raw, rows=rows,
                          check=lambda: as_totals(client.execute(totals_sql(raw))[0])))
    if SERVER_ONLY_PYTHON.exists():  # the same load from an install without chDB and pandas
        only_db = ctx.db("dw_server_only")
        only_env = pipeline_env(ctx, ctx.server_url(only_db), "bench_server_only", source_db)

        def prep_only() -> None:
            client.execute(f"DROP DATABASE IF EXISTS {only_db}")
            reset_checkpoint(source_db, "bench_server_only")

        methods.append(Method(SERVER_ONLY_LOAD, "clickhouse-server", "full",
                              [str(SERVER_ONLY_PYTHON), "etl_pipeline.py"], only_env,
                              prep=prep_only, rows=rows, check=lambda: as_totals(client.execute(
                                  totals_sql(f"{only_db}.v_fact_sales"))[0])))
    if naive:
        methods.append(Method(
            "naive (fetchall -> pandas apply -> tuples)", "clickhouse-server", "full",
            [str(BASELINE_PYTHON), str(BENCH / "naive_pipeline.py"), source_db, naive_db],
            prep=lambda: client.execute(f"DROP DATABASE IF EXISTS {naive_db}"), rows=rows,
            check=lambda: as_totals(client.execute(totals_sql(f"{naive_db}.v_fact_sales"))[0])))
    return methods


def chdb_methods(ctx: Ctx, source_db: str, rows: int) -> list[Method]:
    ref, dw = ctx.work / "chdb_reference", ctx.work / "chdb_pipeline"
    ref_db, dw_db = ctx.db("ref"), ctx.db("dw")
    drop = "DROP DATABASE IF EXISTS {} SYNC"
    env = pipeline_env(ctx, ctx.chdb_url("chdb_pipeline", dw_db), "bench_chdb", source_db)
    totals = lambda: tsv_totals(chdb_sql(dw, totals_sql(f"{dw_db}.v_fact_sales")))  # noqa: E731

    def prep_first() -> None:
        chdb_sql(dw, drop.format(dw_db))
        reset_checkpoint(source_db, "bench_chdb")

    return [
        Method("reference: INSERT ... SELECT FROM mysql()", "chdb", "full",
               [PYTHON, str(BENCH / "chdb_pull.py"), str(ref), ref_db, source_db],
               prep=lambda: chdb_sql(ref, drop.format(ref_db)), rows=rows,
               check=lambda: tsv_totals(chdb_sql(ref, totals_sql(f"{ref_db}.fact_sales FINAL")))),
        Method(FIRST_LOAD, "chdb", "full", [PYTHON, "etl_pipeline.py"], env, prep=prep_first,
               rows=rows, check=totals),
        Method(FULL_REFRESH, "chdb", "full", [PYTHON, "etl_pipeline.py", "--full-refresh"], env,
               rows=rows, check=totals),
        raw_floor_chdb(ctx, source_db, rows),
    ]


def raw_floor_chdb(ctx: Ctx, source_db: str, rows: int) -> Method:
    folder, peers = ctx.work / "chdb_floor", ctx.db("peers")
    raw = f"{peers}.floor_raw"
    env = pipeline_env(ctx, ctx.chdb_url("chdb_floor", peers), "bench_floor", source_db)
    return Method(RAW_FLOOR, "chdb", "full", [PYTHON, str(BENCH / "floor_raw_copy.py"), raw],
                  env, rows=rows, prep=lambda: chdb_sql(
                      folder, f"DROP DATABASE IF EXISTS {peers} SYNC",
                      f"CREATE DATABASE {peers}", RAW_FLOOR_DDL.format(table=raw)),
                  check=lambda: tsv_totals(chdb_sql(folder, totals_sql(raw))))


def floor_method(ctx: Ctx, rows: int, source_db: str | None = None) -> Method:
    s = ctx.mysql_url_env
    sql = ("SELECT transaction_id, user_id, merchant_id, amount, status, transaction_time, "
           "updated_at FROM transactions")
    return Method("floor: mariadb --quick -e SELECT > /dev/null", "source", "full",
                  ["mariadb", "--no-defaults", "--quick", "-h", s["MYSQL_HOST"], "-P",
                   s["MYSQL_PORT"], "-u", s["MYSQL_USER"], f"-p{s['MYSQL_PASSWORD']}",
                   "-D", source_db or ctx.source_db, "-e", sql], rows=rows)


def dlt_method(ctx: Ctx, rows: int) -> Method | None:
    if not baseline_has("dlt", "duckdb"):
        return None  # no baselines' venv: scripts/setup.sh --bench
    work = ctx.work / "dlt"

    def check() -> dict:  # duckdb lives in the baselines' venv: ask it there
        code = ("import duckdb, json, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
                "print(json.dumps(con.execute(sys.argv[2]).fetchall()[0]))")
        sql = ("SELECT count(*), CAST(sum(amount) AS VARCHAR), count(*) FILTER "
               "(WHERE status = 'SUCCESS') FROM bench.fact_sales")
        out = subprocess.run([str(BASELINE_PYTHON), "-c", code, str(work / "warehouse.duckdb"),
                              sql], check=True, capture_output=True, text=True).stdout
        return as_totals(json.loads(out))

    return Method("dlt (sql_table, pyarrow backend -> duckdb)", "duckdb", "full",
                  [str(BASELINE_PYTHON), str(BENCH / "dlt_pipeline.py"), ctx.source_db,
                   str(work)],
                  {"RUNTIME__DLTHUB_TELEMETRY": "false"},
                  prep=lambda: shutil.rmtree(work, ignore_errors=True), rows=rows, check=check)


def incremental_methods(ctx: Ctx, engines: list[str], changed: int) -> list[Method]:
    client = clickhouse_client(ctx.server)
    dw_db = ctx.db("dw")
    out = []
    if "server" in engines:
        out.append(Method("incremental (etl_pipeline.py)", "clickhouse-server", "incremental",
                          [PYTHON, "etl_pipeline.py"],
                          pipeline_env(ctx, ctx.server_url(dw_db), "bench_server"),
                          rows=changed, check=lambda: as_totals(
                              client.execute(totals_sql(f"{dw_db}.v_fact_sales"))[0])))
    if "chdb" in engines:
        dw = ctx.work / "chdb_pipeline"
        out.append(Method("incremental (etl_pipeline.py)", "chdb", "incremental",
                          [PYTHON, "etl_pipeline.py"],
                          pipeline_env(ctx, ctx.chdb_url("chdb_pipeline", dw_db), "bench_chdb"),
                          rows=changed, check=lambda: tsv_totals(
                              chdb_sql(dw, totals_sql(f"{dw_db}.v_fact_sales")))))
    return out


NOOP = "no-op run (etl_pipeline.py, nothing changed)"


def noop_methods(incremental: list[Method]) -> list[Method]:
    """The incremental command when nothing changed: what every run costs before its first
    row (interpreter, imports, the engine, connections, the checkpoint and the audit row)."""
    return [Method(NOOP, x.engine, "incremental", x.argv, x.env, check=x.check)
            for x in incremental]


def cdc_methods(ctx: Ctx, engines: list[str], events: Path, n_events: int) -> list[Method]:
    client = clickhouse_client(ctx.server)
    argv = [PYTHON, "cdc-stream.py", str(events)]
    cdc = ctx.db("cdc")
    view = f"{cdc}.v_cdc_transactions"
    out = []
    if "server" in engines:
        out.append(Method("CDC replay (cdc-stream.py FILE.jsonl)", "clickhouse-server", "cdc",
                          argv, pipeline_env(ctx, ctx.server_url(cdc), "bench_cdc"),
                          prep=lambda: client.execute(f"DROP DATABASE IF EXISTS {cdc}"),
                          rows=n_events,
                          check=lambda: as_totals(client.execute(totals_sql(view))[0])))
    if "chdb" in engines:
        folder = ctx.work / "chdb_cdc"
        out.append(Method("CDC replay (cdc-stream.py FILE.jsonl)", "chdb", "cdc", argv,
                          pipeline_env(ctx, ctx.chdb_url("chdb_cdc", cdc), "bench_cdc"),
                          prep=lambda: chdb_sql(folder, f"DROP DATABASE IF EXISTS {cdc} SYNC"),
                          rows=n_events,
                          check=lambda: tsv_totals(chdb_sql(folder, totals_sql(view)))))
    return out



def binlog_available() -> bool:
    """Whether cdc-stream.py has the binlog source yet (it is being written in parallel)."""
    try:
        out = subprocess.run([PYTHON, "cdc-stream.py", "--help"], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "binlog" in out.stdout


def binlog_methods(ctx: Ctx, engines: list[str], n_changes: int,
                   workload: str) -> list[Method]:
    """`cdc-stream.py --source binlog`, a bounded run applying the changes `run.py` made in the
    source since the previous run (the untimed prep run records the starting position).

    It runs only when `--help` lists binlog. Checked: the snapshot plus every change must leave
    v_cdc_transactions equal to the source's transactions table.
    """
    client = clickhouse_client(ctx.server)
    argv = [PYTHON, "cdc-stream.py", "--source", "binlog"]
    cdc = ctx.db("binlog")
    view = f"{cdc}.v_cdc_transactions"
    out = []
    if "server" in engines:
        out.append(Method(f"binlog CDC, {workload}", "clickhouse-server",
                          "binlog", argv, pipeline_env(ctx, ctx.server_url(cdc), "bench_binlog"),
                          rows=n_changes,
                          check=lambda: as_totals(client.execute(totals_sql(view))[0])))
    if "chdb" in engines:
        folder = ctx.work / "chdb_binlog"
        out.append(Method(f"binlog CDC, {workload}", "chdb", "binlog", argv,
                          pipeline_env(ctx, ctx.chdb_url("chdb_binlog", cdc), "bench_binlog"),
                          rows=n_changes,
                          check=lambda: tsv_totals(chdb_sql(folder, totals_sql(view)))))
    for method in out:  # each reader its own stream name (state key); server id derived
        method.env["CDC_STREAM_NAME"] = f"{ctx.prefix}_{method.engine.replace('-', '_')}"
    return out


def reset_binlog_replicas(ctx: Ctx) -> None:
    """Drop what an earlier bench run replicated: its position is from before the source was
    generated again (outside the binlog), so resuming from it would keep the old rows."""
    clickhouse_client(ctx.server).execute(f"DROP DATABASE IF EXISTS {ctx.db('binlog')}")
    shutil.rmtree(ctx.work / "chdb_binlog", ignore_errors=True)
