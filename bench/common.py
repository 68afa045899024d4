"""Shared bits of the benchmark: paths, connections and the names it works in.

Connection settings come from the project's own `Settings.from_env()` (MYSQL_* variables,
local stack defaults); the ClickHouse server is `BENCH_CLICKHOUSE_*` (default: the local
stack's 127.0.0.1:19000, user etl).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pymysql  # noqa: E402

from ewallet_etl.config import Settings  # noqa: E402

PYTHON = sys.executable  # runs the pipeline: only requirements.txt, as in production

# The baselines' interpreter (naive: pandas + mysql-connector; dlt + duckdb), a venv of its
# own (`scripts/setup.sh --bench`): the pipeline is measured with exactly its production
# dependencies (requirements.txt), nothing the baselines pull in next to it.
BASELINE_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
# The package installed without extras (no chDB, hence no pandas): scripts/setup.sh --bench
SERVER_ONLY_PYTHON = ROOT / ".venv-server" / "bin" / "python"


def venv_has(python: Path, *modules: str) -> bool:
    """Whether the venv of `python` exists and can import `modules`."""
    if not python.exists():
        return False
    import subprocess

    code = ("import importlib.util as u, sys; "
            "sys.exit(not all(u.find_spec(m) for m in sys.argv[1:]))")
    return subprocess.run([str(python), "-c", code, *modules],
                          capture_output=True).returncode == 0


def baseline_has(*modules: str) -> bool:
    """Whether the baselines' venv exists and can import `modules`."""
    return venv_has(BASELINE_PYTHON, *modules)


@dataclass(frozen=True)
class ClickHouseServer:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_env(cls) -> "ClickHouseServer":
        env = os.environ
        return cls(env.get("BENCH_CLICKHOUSE_HOST", "127.0.0.1"),
                   int(env.get("BENCH_CLICKHOUSE_PORT", "19000")),
                   env.get("BENCH_CLICKHOUSE_USER", "etl"),
                   env.get("BENCH_CLICKHOUSE_PASSWORD", "etl_password"))

    def url(self, database: str) -> str:
        return f"clickhouse://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def client_args(self) -> list[str]:
        return ["clickhouse-client", "--host", self.host, "--port", str(self.port),
                "--user", self.user, "--password", self.password]


def source_settings(database: str | None = None) -> Settings:
    settings = Settings.from_env()
    if database is None:
        return settings
    from dataclasses import replace

    return replace(settings, mysql_database=database)


def mysql_conn(database: str | None, local_infile: bool = False) -> pymysql.connections.Connection:
    s = Settings.from_env()
    return pymysql.connect(host=s.mysql_host, port=s.mysql_port, user=s.mysql_user,
                           password=s.mysql_password, database=database, autocommit=True,
                           charset="utf8mb4", init_command="SET time_zone = '+00:00'",
                           local_infile=local_infile)


def clickhouse_client(server: ClickHouseServer):
    from clickhouse_driver import Client

    return Client(host=server.host, port=server.port, user=server.user,
                  password=server.password, send_receive_timeout=600)


def fact_ddl(database: str) -> str:
    """fact_sales' CREATE TABLE from DDL-Clickhouse.sql, for `database` (the references' table)."""
    from ewallet_etl.warehouse import qualify, split_statements

    ddl = (ROOT / "DDL-Clickhouse.sql").read_text()
    marker = "TABLE IF NOT EXISTS analytics_dw.fact_sales"
    (create,) = [s for s in split_statements(ddl) if marker in s]
    return qualify(create.rstrip(";"), database)


def mysql_table_function(source_db: str) -> str:
    s = Settings.from_env()
    return (f"mysql('{s.mysql_host}:{s.mysql_port}', '{source_db}', 'transactions', "
            f"'{s.mysql_user}', '{s.mysql_password}')")


def pull_sql(database: str, table_function: str, chdb: bool) -> str:
    """The references' INSERT ... SELECT FROM mysql(...) (bench/sql/pull.sql), filled in."""
    lines = (ROOT / "bench" / "sql" / "pull.sql").read_text().splitlines()
    text = "\n".join(ln for ln in lines if not ln.startswith("--"))
    version = ("toUnixTimestamp64Micro(src_updated)" if chdb
               else "toUInt64(src_updated) * 1000000")
    return (text.replace("{target}", database).replace("{mysql}", table_function)
            .replace("{version}", version))
