"""Settings, read once from the environment (the only module that reads os.environ).

Every variable is listed, with its default and meaning, in `.env.example` and the README
("Configuration"). Where a value comes from, first match wins: the process environment, then a
`.env` file in the working folder (or the file ETL_ENV_FILE names), then the default. Any
variable may instead be given as `NAME_FILE`, the path of a file holding the value (Docker
secrets). `MYSQL_URL=mysql://user:password@host:port/database` gives the five MYSQL_* values at
once; a MYSQL_* variable set beside it wins for its part. Values out of range, unknown log
levels and URLs that do not parse are refused with one line (exit code 2).
Secrets (MYSQL_PASSWORD, the password inside a URL) never appear in `repr`, logs or error
messages: use `Settings.describe()` for anything printed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

# Embedded chDB in a per-user data folder (the XDG convention), never the working folder: the
# command runs from anywhere and finds the same warehouse. default_clickhouse_url() resolves it.
DEFAULT_CLICKHOUSE_URL = "chdb://${XDG_DATA_HOME:-~/.local/share}/ewallet-etl/chdb"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# name -> default; None means required-with-no-default (none are, today).
ENV_DEFAULTS: dict[str, str] = {
    "MYSQL_HOST": "127.0.0.1",
    "MYSQL_PORT": "13306",
    "MYSQL_USER": "etl",
    "MYSQL_PASSWORD": "etl_password",
    "MYSQL_DATABASE": "ewallet_source",
    "CLICKHOUSE_URL": DEFAULT_CLICKHOUSE_URL,
    "CLICKHOUSE_PASSWORD": "",  # the server's password when CLICKHOUSE_URL holds none
    "ETL_PIPELINE_NAME": "transactions_elt",
    "ETL_CHUNK_ROWS": "100000",
    "ETL_LAG_SECONDS": "0",
    "ETL_OVERLAP_SECONDS": "300",
    "ETL_MAX_RETRIES": "4",
    "ETL_MAX_LAG_SECONDS": "3600",  # the freshness check's limit (status, Dagster)
    "LOG_LEVEL": "INFO",
    # Binlog CDC (cdc-stream.py --source binlog); see docs/binlog-cdc.md, "Settings".
    "CDC_STREAM_NAME": "binlog_cdc",
    "CDC_SERVER_ID": "0",
    "CDC_BATCH_EVENTS": "10000",
    "CDC_BATCH_MS": "1000",
    "CDC_STAR_SCHEMA": "true",  # change streams also feed fact_sales / dim_* (docs/cdc-star.md)
    # The MongoDB source (docs/mongodb.md): the local stack's SecantusDB by default.
    "MONGODB_URL": "mongodb://127.0.0.1:37017/?replicaSet=secantus",
    "MONGODB_DATABASE": "ewallet",
    "MONGODB_COLLECTION": "transactions",
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
    secure: bool = False  # TLS to the server (clickhouse+tls:// or ?secure=true)

    def describe(self) -> str:
        if self.kind == "chdb":
            return f"chdb://{self.path} (database {self.database})"
        scheme = "clickhouse+tls" if self.secure else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}"


ENCODING_HINT = ("a password (or user) holding / @ : ? # or % must be percent-encoded, e.g. "
                 "/ as %2F and @ as %40")


def default_clickhouse_url(env: Mapping[str, str]) -> str:
    """chdb://$XDG_DATA_HOME/ewallet-etl/chdb, or ~/.local/share/... when XDG_DATA_HOME is unset
    or relative (the XDG spec says to ignore a relative one)."""
    base = env.get("XDG_DATA_HOME", "")
    if not base.startswith("/"):
        base = str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return f"chdb://{base.rstrip('/')}/ewallet-etl/chdb"


def _whole(parts: SplitResult, name: str) -> None:
    """A `?` or `#` inside a password ends the authority early: what follows, the password's
    tail and the host, lands in the query or the fragment, with the `@`. Refused, unquoted."""
    if "@" in parts.query or "@" in parts.fragment or parts.fragment:
        raise ConfigError(f"{name} does not parse: {ENCODING_HINT}")


def parse_clickhouse_url(url: str) -> WarehouseTarget:
    """Parse `clickhouse://user:password@host:port/db` (`clickhouse+tls://`, or `?secure=true`,
    for TLS) or `chdb://PATH[?database=db]`. Errors never quote the URL: it holds a secret."""
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        database = parse_qs(parts.query).get("database", ["analytics_dw"])[0]
        if not path:
            raise ConfigError("CLICKHOUSE_URL chdb://PATH needs a PATH")
        return WarehouseTarget(kind="chdb", database=_identifier(database), path=path)
    if parts.scheme in ("clickhouse", "clickhouse+tls"):
        _whole(parts, "CLICKHOUSE_URL")
        secure = parts.scheme == "clickhouse+tls" or _secure_flag(parts.query)
        try:
            port = parts.port or (9440 if secure else 9000)
        except ValueError as exc:
            raise ConfigError(f"CLICKHOUSE_URL does not parse (its port); {ENCODING_HINT}") from exc
        database = parts.path.lstrip("/") or "analytics_dw"
        if not IDENTIFIER.match(database):  # not echoed: a cut password may sit in it
            raise ConfigError("CLICKHOUSE_URL does not parse: its database is not a name "
                              f"(letters, digits, _); {ENCODING_HINT}")
        return WarehouseTarget(
            kind="clickhouse",
            database=database,
            host=parts.hostname or "127.0.0.1",
            port=port,
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            secure=secure,
        )
    raise ConfigError("CLICKHOUSE_URL must start with clickhouse://, clickhouse+tls:// or "
                      "chdb://")


def with_password(target: WarehouseTarget, password: str) -> WarehouseTarget:
    """CLICKHOUSE_PASSWORD (or CLICKHOUSE_PASSWORD_FILE) for a URL without one, so that the
    secret need not sit in a URL. A URL with another password is refused: which one is meant?"""
    if not password or target.kind != "clickhouse" or target.password == password:
        return target
    if target.password:
        raise ConfigError("CLICKHOUSE_URL holds a password and CLICKHOUSE_PASSWORD another one: "
                          "keep one")
    return replace(target, password=password)


def _secure_flag(query: str) -> bool:
    options = parse_qs(query, keep_blank_values=True)
    if set(options) - {"secure"}:  # not named: the text after ? may be a password's tail
        raise ConfigError("CLICKHOUSE_URL: an unknown ?option (only ?secure=true|false); "
                          f"{ENCODING_HINT}")
    value = options.get("secure", ["false"])[-1].lower()
    if value not in ("true", "false", "1", "0"):
        raise ConfigError("CLICKHOUSE_URL: secure must be true or false")
    return value in ("true", "1")


def parse_mysql_url(url: str) -> dict[str, str]:
    """`mysql://user:password@host:port/database` -> the MYSQL_* values it gives."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ConfigError("MYSQL_URL must start with mysql://")
    _whole(parts, "MYSQL_URL")
    if parts.query:  # ignoring ?ssl=true would connect in clear text: refused, not dropped
        raise ConfigError("MYSQL_URL takes no ?options (TLS and the rest are not supported); "
                          f"{ENCODING_HINT}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"MYSQL_URL does not parse (its port); {ENCODING_HINT}") from exc
    database = parts.path.lstrip("/")
    if database and not IDENTIFIER.match(database):
        raise ConfigError(f"MYSQL_URL does not parse: its database is not a name; {ENCODING_HINT}")
    values = {"MYSQL_HOST": parts.hostname or None,
              "MYSQL_PORT": str(port) if port is not None else None,
              "MYSQL_USER": unquote(parts.username) if parts.username else None,
              "MYSQL_PASSWORD": unquote(parts.password) if parts.password is not None else None,
              "MYSQL_DATABASE": database or None}
    return {name: value for name, value in values.items() if value is not None}


def _identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ConfigError(f"{name!r} is not a valid database name (letters, digits, _)")
    return name


# name -> (minimum, maximum): a value outside is refused, not clipped.
INT_RANGES: dict[str, tuple[int, int]] = {
    "MYSQL_PORT": (1, 65_535),
    "ETL_CHUNK_ROWS": (1, 10_000_000),
    "ETL_LAG_SECONDS": (0, 7 * 86_400),
    "ETL_OVERLAP_SECONDS": (0, 31 * 86_400),
    "ETL_MAX_RETRIES": (0, 20),
    "ETL_MAX_LAG_SECONDS": (1, 365 * 86_400),
    "CDC_SERVER_ID": (0, 2**32 - 1),
    "CDC_BATCH_EVENTS": (1, 10_000_000),
    "CDC_BATCH_MS": (1, 3_600_000),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name, ENV_DEFAULTS[name])
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw[:40]!r}") from exc
    low, high = INT_RANGES[name]
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _mongodb_url(url: str) -> str:
    """A standard mongodb:// (or mongodb+srv://) URI; refused without quoting it (a secret)."""
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGODB_URL must start with mongodb:// or mongodb+srv://")
    return url


def _mongo_name(value: str, name: str) -> str:
    """A database or collection name MongoDB accepts (and a log line can show)."""
    if not value or len(value) > 120 or any(c in value for c in '/\\. "$\x00'):
        raise ConfigError(f"{name} must be a plain name (no / \\ . space \" $), got "
                          f"{value[:40]!r}")
    return value


def _name(value: str, name: str, limit: int = 100) -> str:
    """A host, user, pipeline or stream name: not blank, printable, at most `limit` long (the
    checkpoint's pipeline_name is a VARCHAR(100))."""
    if not value.strip():
        raise ConfigError(f"{name} must not be empty")
    if not value.isprintable():
        raise ConfigError(f"{name} must be printable (no control characters)")
    if len(value) > limit:
        raise ConfigError(f"{name} must be at most {limit} characters, got {len(value)}")
    return value


def _bool(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name} must be true or false, got {value[:40]!r}")
    return text in ("true", "1", "yes")


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value[:40]!r}")
    return level


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (blank lines, `#` comments and `export ` prefixes allowed;
    a value in matching quotes is taken inside them)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{path.name} line {number} is not NAME=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def layered_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The process environment over a .env file (ETL_ENV_FILE, else ./.env when present)."""
    named = environ.get("ETL_ENV_FILE")
    path = Path(named) if named else Path(".env")
    if named and not path.is_file():
        raise ConfigError(f"ETL_ENV_FILE names no file: {named}")
    return {**(read_dotenv(path) if path.is_file() else {}), **environ}


def resolve(env: Mapping[str, str]) -> dict[str, str]:
    """Apply NAME_FILE (a value read from a file) and MYSQL_URL to a raw environment."""
    resolved = dict(env)
    for target in [*ENV_DEFAULTS, "MYSQL_URL"]:  # only our own settings: other *_FILE are not
        name = f"{target}_FILE"
        if name not in env:
            continue
        if target in env:
            raise ConfigError(f"both {target} and {name} are set: keep one")
        try:
            resolved[target] = Path(env[name]).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {env[name]} ({exc.strerror})") from exc
    if resolved.get("MYSQL_URL"):
        resolved = {**parse_mysql_url(resolved["MYSQL_URL"]), **resolved}
    return resolved


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
    cdc_star_schema: bool = True  # replay and binlog also write the star schema
    max_lag_seconds: int = 3600  # freshness: the batch may lag the source by this much
    mongodb_url: str = field(default="mongodb://127.0.0.1:37017/?replicaSet=secantus",
                             repr=False)  # may hold a password
    mongodb_database: str = "ewallet"
    mongodb_collection: str = "transactions"
    kill_at: str = ""  # tests only: the fault point where the run SIGKILLs itself (faults.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """From the process environment and a .env file; or, given `env`, from it alone."""
        env = resolve(layered_environment(os.environ) if env is None else env)
        url = env["CLICKHOUSE_URL"] if "CLICKHOUSE_URL" in env else default_clickhouse_url(env)
        get = lambda name: env.get(name, ENV_DEFAULTS[name])  # noqa: E731
        return cls(
            mysql_host=_name(get("MYSQL_HOST"), "MYSQL_HOST", 255),
            mysql_port=_int(env, "MYSQL_PORT"),
            mysql_user=_name(get("MYSQL_USER"), "MYSQL_USER"),
            mysql_password=get("MYSQL_PASSWORD"),
            mysql_database=_identifier(get("MYSQL_DATABASE")),
            warehouse=with_password(parse_clickhouse_url(url), get("CLICKHOUSE_PASSWORD")),
            pipeline_name=_name(get("ETL_PIPELINE_NAME"), "ETL_PIPELINE_NAME"),
            chunk_rows=_int(env, "ETL_CHUNK_ROWS"),
            lag_seconds=_int(env, "ETL_LAG_SECONDS"),
            overlap_seconds=_int(env, "ETL_OVERLAP_SECONDS"),
            max_retries=_int(env, "ETL_MAX_RETRIES"),
            log_level=_log_level(get("LOG_LEVEL")),
            cdc_stream_name=_name(get("CDC_STREAM_NAME"), "CDC_STREAM_NAME"),
            cdc_server_id=_int(env, "CDC_SERVER_ID"),
            cdc_batch_events=_int(env, "CDC_BATCH_EVENTS"),
            cdc_batch_ms=_int(env, "CDC_BATCH_MS"),
            cdc_star_schema=_bool(get("CDC_STAR_SCHEMA"), "CDC_STAR_SCHEMA"),
            max_lag_seconds=_int(env, "ETL_MAX_LAG_SECONDS"),
            mongodb_url=_mongodb_url(get("MONGODB_URL")),
            mongodb_database=_mongo_name(get("MONGODB_DATABASE"), "MONGODB_DATABASE"),
            mongodb_collection=_mongo_name(get("MONGODB_COLLECTION"), "MONGODB_COLLECTION"),
            kill_at=env.get("ETL_KILL_AT", ""),  # undocumented on purpose: the kill tests' hook
        )

    def describe(self) -> str:
        """A one-line, secret-free description for logs."""
        return (
            f"mysql://{self.mysql_user}@{self.mysql_host}:{self.mysql_port}/{self.mysql_database}"
            f" -> {self.warehouse.describe()}"
        )
