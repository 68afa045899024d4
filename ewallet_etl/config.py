"""Settings, read once from the environment (the only module that reads os.environ).

Every variable is listed, with its default and meaning, in `.env.example` and the README
("Configuration").
Secrets (MYSQL_PASSWORD, the password inside CLICKHOUSE_URL) never appear in `repr`, logs or
error messages: use `Settings.describe()` for anything printed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_CLICKHOUSE_URL = "chdb://.local/chdb"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# name -> default; None means required-with-no-default (none are, today).
ENV_DEFAULTS: dict[str, str] = {
    "MYSQL_HOST": "127.0.0.1",
    "MYSQL_PORT": "13306",
    "MYSQL_USER": "etl",
    "MYSQL_PASSWORD": "etl_password",
    "MYSQL_DATABASE": "ewallet_source",
    "CLICKHOUSE_URL": DEFAULT_CLICKHOUSE_URL,
    "ETL_PIPELINE_NAME": "transactions_elt",
    "ETL_CHUNK_ROWS": "100000",
    "ETL_LAG_SECONDS": "0",
    "ETL_OVERLAP_SECONDS": "300",
    "ETL_MAX_RETRIES": "4",
    "LOG_LEVEL": "INFO",
    # Binlog CDC (cdc-stream.py --source binlog); see docs/binlog-cdc.md, "Settings".
    "CDC_STREAM_NAME": "binlog_cdc",
    "CDC_SERVER_ID": "0",
    "CDC_BATCH_EVENTS": "10000",
    "CDC_BATCH_MS": "1000",
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message never contains a secret."""


@dataclass(frozen=True)
class WarehouseTarget:
    """Where the warehouse lives: a ClickHouse server (native protocol) or a chDB folder."""

    kind: str  # "clickhouse" or "chdb"
    database: str
    host: str = ""
    port: int = 9000
    user: str = "default"
    password: str = field(default="", repr=False)
    path: str = ""

    def describe(self) -> str:
        if self.kind == "chdb":
            return f"chdb://{self.path} (database {self.database})"
        return f"clickhouse://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_clickhouse_url(url: str) -> WarehouseTarget:
    """Parse `clickhouse://user:password@host:port/db` or `chdb://PATH[?database=db]`."""
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        database = parse_qs(parts.query).get("database", ["analytics_dw"])[0]
        if not path:
            raise ConfigError("CLICKHOUSE_URL chdb://PATH needs a PATH")
        return WarehouseTarget(kind="chdb", database=_identifier(database), path=path)
    if parts.scheme == "clickhouse":
        try:
            port = parts.port or 9000
        except ValueError as exc:
            raise ConfigError("CLICKHOUSE_URL has an invalid port") from exc
        database = parts.path.lstrip("/") or "analytics_dw"
        return WarehouseTarget(
            kind="clickhouse",
            database=_identifier(database),
            host=parts.hostname or "127.0.0.1",
            port=port,
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
        )
    raise ConfigError("CLICKHOUSE_URL must start with clickhouse:// or chdb://")


def _identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ConfigError(f"{name!r} is not a valid database name (letters, digits, _)")
    return name


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = env.get(name, ENV_DEFAULTS[name])
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    mysql_host: str
    mysql_port: int
    mysql_user: str
    mysql_password: str = field(repr=False)
    mysql_database: str
    warehouse: WarehouseTarget
    pipeline_name: str
    chunk_rows: int
    lag_seconds: int
    overlap_seconds: int
    max_retries: int
    log_level: str
    # Binlog CDC: the cdc_state key, the replica's server id (0 = derived from the stream name
    # and source database), and the micro-batch limits (events, milliseconds).
    cdc_stream_name: str = "binlog_cdc"
    cdc_server_id: int = 0
    cdc_batch_events: int = 10000
    cdc_batch_ms: int = 1000
    kill_at: str = ""  # tests only: the fault point where the run SIGKILLs itself (faults.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        get = lambda name: env.get(name, ENV_DEFAULTS[name])  # noqa: E731
        return cls(
            mysql_host=get("MYSQL_HOST"),
            mysql_port=_int(env, "MYSQL_PORT", 1),
            mysql_user=get("MYSQL_USER"),
            mysql_password=get("MYSQL_PASSWORD"),
            mysql_database=_identifier(get("MYSQL_DATABASE")),
            warehouse=parse_clickhouse_url(get("CLICKHOUSE_URL")),
            pipeline_name=get("ETL_PIPELINE_NAME"),
            chunk_rows=_int(env, "ETL_CHUNK_ROWS", 1),
            lag_seconds=_int(env, "ETL_LAG_SECONDS"),
            overlap_seconds=_int(env, "ETL_OVERLAP_SECONDS"),
            max_retries=_int(env, "ETL_MAX_RETRIES"),
            log_level=get("LOG_LEVEL").upper(),
            cdc_stream_name=get("CDC_STREAM_NAME"),
            cdc_server_id=_int(env, "CDC_SERVER_ID"),
            cdc_batch_events=_int(env, "CDC_BATCH_EVENTS", 1),
            cdc_batch_ms=_int(env, "CDC_BATCH_MS", 1),
            kill_at=env.get("ETL_KILL_AT", ""),  # undocumented on purpose: the kill tests' hook
        )

    def describe(self) -> str:
        """A one-line, secret-free description for logs."""
        return (
            f"mysql://{self.mysql_user}@{self.mysql_host}:{self.mysql_port}/{self.mysql_database}"
            f" -> {self.warehouse.describe()}"
        )
