"""Peer tools, timed beside the pipeline in the `full` group: what a user could run instead.

Each lands a raw copy of the source's 8 transaction columns: no transform, no surrogate keys,
no dimensions, no checkpoint, no audit row, so each does less work than the pipeline. They
keep every status, as the pipeline's facts do, so the check is the same as everyone's: rows,
sum(amount) and sales of the copy against the source (`gen_data.source_totals`).

Optional: the tools live in their own venv, `.venv-peers` (bench/requirements-peers.txt, made
by `scripts/setup.sh --bench`), so their pins meet neither the pipeline's nor the baselines';
a peer whose venv or binary is missing is skipped with a note. The server's plain copy needs
only clickhouse-client. Workarounds for ClickHouse 18.16, measured in
shared/research/perf-peers.md: ingestr's default DDL uses DateTime64 (unknown to 18.16), so its
datetimes go as String; sling's direct ClickHouse target reads system.columns.position (not in
18.16), so sling writes CSV to stdout, with datetimes formatted the way 18.16 parses them, into
`clickhouse-client` (a `bash -c` pipeline with `set -o pipefail`); clickhouse-connect's server
client reads system.settings.readonly (not in 18.16), so it is used with chDB only.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from urllib.parse import quote

from common import ROOT, clickhouse_client, mysql_table_function, venv_has
from methods import BENCH, Ctx, Method, as_totals, chdb_sql, totals_sql, tsv_totals

PEERS = ROOT / ".venv-peers"
PEERS_PYTHON = PEERS / "bin" / "python"
INGESTR = PEERS / "bin" / "ingestr"  # ingestr 1.1.22's wheel ships its Go binary here
INSTALL = ("scripts/setup.sh --bench (or: python3 -m venv .venv-peers && "
           ".venv-peers/bin/pip install -r bench/requirements-peers.txt)")

# The raw copy on the server: the source's columns and types as mysql() maps them on 18.16
# (TIMESTAMP(6) -> DateTime: whole seconds), the amount as Decimal, in a plain MergeTree.
RAW_DDL = """CREATE TABLE {table} (
    transaction_id String, user_id UInt32, merchant_id UInt32, amount Decimal(10, 2),
    status String, transaction_time DateTime, created_at DateTime, updated_at DateTime
) ENGINE = MergeTree ORDER BY transaction_id"""
# ingestr's types as it maps them, but for the datetimes: String (18.16 has no DateTime64).
INGESTR_COLUMNS = "transaction_time:string,created_at:string,updated_at:string"
# sling's CSV datetimes by default end in " +00" and carry microseconds: 18.16 parses neither.
SLING_OPTIONS = '{datetime_format: "YYYY-MM-DD HH:mm:ss"}'


def note(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def peers_has(*modules: str) -> bool:
    """Whether the peers' venv exists and can import `modules`."""
    return venv_has(PEERS_PYTHON, *modules)


def sling_binary() -> Path | None:
    """The binary the sling-linux-amd64 wheel ships (it installs no console script)."""
    found = sorted(PEERS.glob("lib/python*/site-packages/sling_linux_amd64/bin/sling-linux-amd64"))
    return found[-1] if found else None


def mysql_url(ctx: Ctx) -> str:
    s = ctx.mysql_url_env
    user, password = quote(s["MYSQL_USER"], safe=""), quote(s["MYSQL_PASSWORD"], safe="")
    return f"mysql://{user}:{password}@{s['MYSQL_HOST']}:{s['MYSQL_PORT']}/{ctx.source_db}"


def peer_methods(ctx: Ctx, rows: int, engines: list[str]) -> list[Method]:
    out: list[Method] = []
    if "server" in engines:
        out.append(plain_copy_method(ctx, rows))
    if not PEERS_PYTHON.exists():
        note(f"no .venv-peers: skipping ingestr, sling and connectorx -> chDB; {INSTALL}")
        return out
    if "server" in engines:
        for method in (ingestr_method(ctx, rows), sling_method(ctx, rows)):
            if method:
                out.append(method)
    if "chdb" in engines:
        method = cx_chdb_method(ctx, rows)
        if method:
            out.append(method)
    return out


def server_prep(ctx: Ctx, table: str, create: bool = True):
    """Drop the peer's table (and what a failed ingestr run left), then create it if asked."""
    client = clickhouse_client(ctx.server)
    peers = ctx.db("peers")

    def prep() -> None:
        client.execute(f"CREATE DATABASE IF NOT EXISTS {peers}")
        stale = client.execute("SELECT name FROM system.tables WHERE database = %(db)s AND "
                               "(name = %(table)s OR name LIKE %(staging)s)",
                               {"db": peers, "table": table, "staging": f"{table}_staging%"})
        for (name,) in stale:
            client.execute(f"DROP TABLE IF EXISTS {peers}.{name}")
        if create:
            client.execute(RAW_DDL.format(table=f"{peers}.{table}"))
    return prep


def server_check(ctx: Ctx, table: str):
    client = clickhouse_client(ctx.server)
    return lambda: as_totals(client.execute(totals_sql(table))[0])


def plain_copy_method(ctx: Ctx, rows: int) -> Method:
    table = f"{ctx.db('peers')}.mysql_copy"
    sql = f"INSERT INTO {table} SELECT * FROM {mysql_table_function(ctx.source_db)}"
    return Method("server pull, plain copy: INSERT ... SELECT * FROM mysql()",
                  "clickhouse-server", "full", [*ctx.server.client_args(), "--query", sql],
                  prep=server_prep(ctx, "mysql_copy"), rows=rows,
                  check=server_check(ctx, table))


def ingestr_method(ctx: Ctx, rows: int) -> Method | None:
    if not INGESTR.exists():
        note(f"no ingestr in .venv-peers: skipping it; {INSTALL}")
        return None
    peers, server = ctx.db("peers"), ctx.server
    dest = (f"clickhouse://{quote(server.user, safe='')}:{quote(server.password, safe='')}"
            f"@{server.host}:{server.port}?secure=0")
    env = {"INGESTR_SOURCE_URI": mysql_url(ctx), "INGESTR_DESTINATION_URI": dest,
           "INGESTR_DISABLE_TELEMETRY": "true"}
    # Replace strategy: it loads a staging table in --staging-dataset, then swaps it in. It
    # takes the source's primary key as a ReplacingMergeTree key (hence FINAL in the check).
    argv = [str(INGESTR), "ingest", "--source-table", "transactions",
            "--dest-table", f"{peers}.ingestr", "--staging-dataset", peers, "--yes",
            "--progress", "log", "--no-load-timestamp", "--columns", INGESTR_COLUMNS]
    return Method("ingestr 1.1.22 -> server", "clickhouse-server", "full", argv, env,
                  prep=server_prep(ctx, "ingestr", create=False), rows=rows,
                  check=server_check(ctx, f"{peers}.ingestr FINAL"))


def sling_method(ctx: Ctx, rows: int) -> Method | None:
    sling = sling_binary()
    if sling is None:
        note(f"no sling-linux-amd64 in .venv-peers: skipping sling; {INSTALL}")
        return None
    table = f"{ctx.db('peers')}.sling"
    # The source as an environment connection (sling reads a URL from the named variable), so
    # the password is not on the command line; sling keeps its state under SLING_HOME_DIR.
    env = {"BENCH_PEER_SOURCE": mysql_url(ctx), "SLING_HOME_DIR": str(ctx.work / "sling"),
           "SLING_DISABLE_TELEMETRY": "true"}
    read = [str(sling), "run", "--src-conn", "BENCH_PEER_SOURCE",
            "--src-stream", f"{ctx.source_db}.transactions", "--stdout",
            "--tgt-options", SLING_OPTIONS]
    load = [*ctx.server.client_args(), "--query", f"INSERT INTO {table} FORMAT CSVWithNames"]
    script = f"set -o pipefail; {shlex.join(read)} | {shlex.join(load)}"
    # Named without "|": the report's Markdown table would split the cell there.
    return Method("sling 1.4.11 --stdout, piped into clickhouse-client", "clickhouse-server",
                  "full", ["bash", "-c", script], env, prep=server_prep(ctx, "sling"),
                  rows=rows, check=server_check(ctx, table))


def cx_chdb_method(ctx: Ctx, rows: int) -> Method | None:
    if not peers_has("connectorx", "clickhouse_connect", "chdb", "pyarrow"):
        note(f"no .venv-peers with connectorx, clickhouse-connect and chDB: skipping the "
             f"connectorx -> chDB peer; {INSTALL}")
        return None
    folder, peers = ctx.work / "chdb_peers", ctx.db("peers")
    table = f"{peers}.transactions_raw"  # bench/peer_cx_chdb.py creates it
    return Method("connectorx -> clickhouse-connect insert_arrow -> chDB (raw copy)", "chdb",
                  "full", [str(PEERS_PYTHON), str(BENCH / "peer_cx_chdb.py"), str(folder), peers],
                  {**ctx.mysql_url_env, "MYSQL_DATABASE": ctx.source_db},
                  prep=lambda: chdb_sql(folder, f"DROP DATABASE IF EXISTS {peers} SYNC"),
                  rows=rows, check=lambda: tsv_totals(chdb_sql(folder, totals_sql(table))))


def drop_peers(ctx: Ctx) -> None:
    """What the peers left on the server (their chDB folder and sling's state are in ctx.work)."""
    clickhouse_client(ctx.server).execute(f"DROP DATABASE IF EXISTS {ctx.db('peers')}")
