"""Command lines: argument parsing, logging set-up and exit codes, nothing else.

Exit codes (the same for every command):
  0  success
  1  failed: nothing was committed past what had landed; the checkpoint is untouched
  2  bad usage or configuration
  3  completed with rejects: good rows landed, bad ones are in etl_quarantine
  4  reconciliation found a difference between source and warehouse
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import signal
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Sequence

from ewallet_etl.config import ConfigError, Settings
from ewallet_etl.core.errors import Interrupted, one_line
from ewallet_etl.core.exit_codes import (  # noqa: F401
    EXIT_FAILED,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_REJECTS,
    EXIT_USAGE,
)
from ewallet_etl.pipelines import faults

log = logging.getLogger("ewallet_etl")
# The variables each command reads, named in its --help (README: Configuration).
MYSQL_VARS = "MYSQL_URL or MYSQL_HOST MYSQL_PORT MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE"
WAREHOUSE_VARS = "CLICKHOUSE_URL CLICKHOUSE_PASSWORD ETL_MAX_RETRIES"
MONGODB_VARS = "MONGODB_URL MONGODB_DATABASE MONGODB_COLLECTION"


def reads(*names: str) -> str:
    """The help's sentence on the environment: `names`, then what every command reads."""
    return ("Reads " + " ".join(names) + " LOG_LEVEL; any of them as NAME_FILE (a file holding "
            "the value: Docker secrets); the process environment wins over the file "
            "ETL_ENV_FILE names (default ./.env), which wins over the defaults (the local "
            "stack; README: Configuration).")


ENVIRONMENT = reads(MYSQL_VARS, WAREHOUSE_VARS, MONGODB_VARS)
QUIET_LIBRARIES = ("clickhouse_driver", "pymysqlreplication")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message (and the stack with
    --debug), for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info:
            entry["stack"] = self.formatException(record.exc_info)
        if hasattr(record, "progress"):  # pipelines/progress.py: the numbers as fields
            entry["progress"] = record.progress
        return json.dumps(entry, ensure_ascii=False)


class TerminalProgress(logging.StreamHandler):
    """Progress drawn as a bar on one terminal line, redrawn in place (the next other log line
    clears it first): a fraction when the total is known, a moving marker when it is not."""

    WIDTH = 20

    def emit(self, record: logging.LogRecord) -> None:
        numbers = getattr(record, "progress", None)
        line = self.bar(numbers) if numbers else record.getMessage()
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def bar(self, p: dict) -> str:
        rows, total = p["rows"], p["total"]
        if total:
            done = min(rows / total, 1.0)
            filled = round(done * self.WIDTH)
            drawn = f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {done:4.0%} {rows:,}/{total:,}"
        else:  # no total: a marker that moves with each redraw shows it is alive
            at = int(p["elapsed_seconds"] * 2) % self.WIDTH
            drawn = f"[{' ' * at}<=>{' ' * (self.WIDTH - at)}] {rows:,}"
        return (f"{p['what']} {drawn} rows, {p['rows_per_second']:,} rows/s, "
                f"{p['elapsed_seconds']:.1f} s")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="log stack traces on errors")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text (default) or one JSON object per line")


def setup_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    terminal = log_format == "text" and sys.stderr.isatty()
    text = ("\r\x1b[K" if terminal else "") + "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler])
    if terminal:  # progress draws one line in place; the next log line clears it first
        progress = logging.getLogger("ewallet_etl.progress")
        progress.addHandler(TerminalProgress(sys.stderr))
        progress.propagate = False
    if level != "DEBUG":  # libraries log failed connects with stack traces; ours is one line
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.ERROR)
        # connectorx logs from Rust (its connection pool's retries), configured by RUST_LOG
        # when it is first imported, which happens later, in the first read.
        os.environ.setdefault("RUST_LOG", "off")


def handle_signals() -> None:
    """SIGINT and SIGTERM stop a command where it is, as `Interrupted` (the binlog's --follow
    installs its own, which finish the batch first). Only the entry points call it: a library
    user's process keeps its own handlers."""
    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


STOPPED = ("stopped before its checkpoint or position moved; run it again to finish (what "
           "landed is absorbed)")


def interrupted(exc: BaseException, what: str = STOPPED) -> int:
    """One line for a run stopped by a signal; its exit code (130 for SIGINT, 143 for SIGTERM)."""
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    log.error("interrupted by %s: %s", signal.Signals(signum).name, what)
    return 128 + signum


def read_settings(log_format: str = "text") -> Settings | None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        setup_logging("INFO", log_format)
        log.error("configuration: %s", exc)
        return None
    faults.arm(settings.kill_at)
    return settings


def configured(args: argparse.Namespace) -> Settings | None:
    """The settings, with logging set up at their level (or DEBUG with --debug) in the
    --log-format asked for (None: a configuration error, logged)."""
    settings = read_settings(args.log_format)
    if settings is not None:
        setup_logging("DEBUG" if args.debug else settings.log_level, args.log_format)
    return settings


def _fail(exc: BaseException, debug: bool) -> int:
    """One clear line naming what failed; the stack only with --debug."""
    log.error("failed: %s", one_line(exc), exc_info=debug)
    return EXIT_FAILED


RUN_READS = reads(MYSQL_VARS, WAREHOUSE_VARS, "ETL_PIPELINE_NAME ETL_CHUNK_ROWS ETL_LAG_SECONDS "
                  "ETL_OVERLAP_SECONDS", "(--source mongodb:", MONGODB_VARS + ")")
RUN_EXITS = ("Exit codes: 0 ok, 1 failed (or another run of the pipeline in progress), 2 usage, "
             "3 completed with rejects, 4 reconcile mismatch, 130/143 interrupted. ")


def _source_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=("mysql", "mongodb"), default="mysql",
                        help="the source: MySQL/MariaDB (default) or the MongoDB wallet "
                        "documents (MONGODB_URL, MONGODB_DATABASE, MONGODB_COLLECTION)")


def run_parser(prog: str, reconcile_flag: bool = True) -> argparse.ArgumentParser:
    """`ewallet-etl run` (and, with `--reconcile`, the root script etl_pipeline.py)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Batch ELT: MySQL transactions -> ClickHouse star schema. "
        "Incremental from the checkpoint table by default.",
        epilog=RUN_EXITS + RUN_READS)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full-refresh", action="store_true",
                      help="ignore the checkpoint and reload everything (idempotent)")
    if reconcile_flag:
        mode.add_argument("--reconcile", nargs="?", const="fact_sales", metavar="TABLE",
                          choices=("fact_sales", "cdc_transactions"),
                          help="compare the source's transactions with TABLE (fact_sales, the "
                          "default, or the CDC replica cdc_transactions) per day; exit 4 on "
                          "any difference (ewallet-etl reconcile)")
    parser.add_argument("--since", type=_day, metavar="YYYY-MM-DD",
                        help="backfill: reload the transactions of the days from SINCE to "
                        "UNTIL (exclusive) of transaction_time, whatever their change time; the "
                        "checkpoint is left alone")
    parser.add_argument("--until", type=_day, metavar="YYYY-MM-DD",
                        help="backfill: the first day not reloaded")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what the run would do (mode, window, rows) and write nothing")
    _source_flag(parser)
    add_output_flags(parser)
    parser.set_defaults(reconcile=None)
    return parser


def reconcile_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Compare the source's transactions with a warehouse table per "
        "day (count and amount, to the cent); exit 4 on any difference. Writes nothing but its "
        "audit row.", epilog=RUN_EXITS + RUN_READS)
    parser.add_argument("reconcile", nargs="?", default="fact_sales", metavar="TABLE",
                        choices=("fact_sales", "cdc_transactions"),
                        help="fact_sales (default) or the CDC replica cdc_transactions")
    _source_flag(parser)
    add_output_flags(parser)
    parser.set_defaults(full_refresh=False, since=None, until=None, dry_run=False)
    return parser


def etl_main(argv: Sequence[str] | None = None, prog: str = "etl_pipeline.py") -> int:
    """The root script's parser: run and --reconcile in one (etl_pipeline.py)."""
    parser = run_parser(prog)
    return _etl(parser, parser.parse_args(argv))


def run_main(argv: Sequence[str] | None = None, prog: str = "ewallet-etl run") -> int:
    parser = run_parser(prog)  # --reconcile kept: `ewallet-etl reconcile` is the same run
    return _etl(parser, parser.parse_args(argv))


def reconcile_main(argv: Sequence[str] | None = None,
                   prog: str = "ewallet-etl reconcile") -> int:
    parser = reconcile_parser(prog)
    return _etl(parser, parser.parse_args(argv))


def _etl(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.source == "mongodb" and (args.since or args.dry_run
                                     or args.reconcile not in (None, "fact_sales")):
        parser.error("--source mongodb runs a full or incremental load, or a reconciliation "
                     "of fact_sales (not --since/--until, --dry-run or a replica)")
    if (args.since is None) != (args.until is None):
        parser.error("a backfill needs both --since and --until")
    if args.since is not None and (args.reconcile or args.full_refresh or args.dry_run):
        parser.error("--since/--until is a run of its own: not with --full-refresh, "
                     "--reconcile or --dry-run")
    if args.since is not None and not args.since < args.until:
        parser.error("--since must be before --until")
    settings = configured(args)
    if settings is None:
        return EXIT_USAGE
    log.info("ewallet-etl: %s", settings.describe())
    try:
        return _run_etl(settings, args)
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        _fail(exc, args.debug)
        # A source the run cannot read safely (SourceSchemaError) is a usage problem.
        return getattr(exc, "exit_code", EXIT_FAILED)


def _run_etl(settings: Settings, args: argparse.Namespace) -> int:
    if args.reconcile and args.source == "mysql":
        from ewallet_etl.pipelines.reconcile import TARGETS, reconcile

        return EXIT_OK if reconcile(settings, TARGETS[args.reconcile]) else EXIT_MISMATCH
    if args.source == "mongodb" and not mongodb_installed():
        return EXIT_USAGE
    if args.source == "mongodb" and args.reconcile:
        from ewallet_etl.pipelines.mongo_reconcile import reconcile_mongo

        return EXIT_OK if reconcile_mongo(settings).ok else EXIT_MISMATCH
    if args.source == "mongodb":
        from ewallet_etl.pipelines.mongo import run_mongo

        mongo = run_mongo(settings, full_refresh=args.full_refresh)
        log.info("%s", mongo.summary())
        return EXIT_REJECTS if mongo.rejected else EXIT_OK
    from ewallet_etl.pipelines.batch import dry_run, run_backfill, run_batch

    if args.dry_run:
        plan = dry_run(settings, full_refresh=args.full_refresh)
        log.info("dry run (nothing written): %s", json.dumps(plan))
        return EXIT_OK
    if args.since is not None:
        report = run_backfill(settings, args.since, args.until)
    else:
        report = run_batch(settings, full_refresh=args.full_refresh)
    log.info("%s", report.summary())
    return EXIT_REJECTS if report.rows_rejected else EXIT_OK


def mongodb_installed() -> bool:
    """The MongoDB source's driver is an optional extra: say how to get it (exit 2)."""
    try:
        import pymongo  # noqa: F401
    except ModuleNotFoundError:
        log.error("the MongoDB driver is not installed: pip install 'ewallet-etl[mongodb]'")
        return False
    return True


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text[:40]!r}") from None


def init_main(argv: Sequence[str] | None = None, prog: str = "ewallet-etl init") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Check a source database of your own for what the pipeline "
        "needs (the checkpoint table, updated_at TIMESTAMP(6) columns and their indexes, the "
        "columns it reads, the PROCESS privilege) and say what is missing. With --apply, create "
        "the pipeline's own objects (never your data; a missing table or column is left to you).",
        epilog="Exit codes: 0 ready, 1 failed, 2 something is missing (or usage), 130/143 "
        "interrupted. " + reads(MYSQL_VARS))
    parser.add_argument("--apply", action="store_true",
                        help="run the statements shown (ALTER TABLE / CREATE INDEX / CREATE TABLE)")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    settings = configured(args)
    if settings is None:
        return EXIT_USAGE
    from ewallet_etl.sources import mysql as source_mysql
    from ewallet_etl.sources import mysql_setup

    try:
        conn = source_mysql.connect(settings)
        try:
            steps = mysql_setup.inspect(conn)
            process = mysql_setup.can_see_transactions(conn)
            if args.apply and any(step.sql for step in steps):
                mysql_setup.apply(conn, steps)
                log.info("applied %d statement(s)", sum(1 for step in steps if step.sql))
                steps = mysql_setup.inspect(conn)
        finally:
            conn.close()
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc, "nothing more was changed; run it again to see where the source "
                                "stands (each statement is applied whole or not at all)")
    except Exception as exc:
        return _fail(exc, args.debug)
    for step in steps:
        print(f"missing: {step.why}" + (f"\n  {'applied' if args.apply else 'fix'}: "
                                         f"{' '.join(step.sql.split())}" if step.sql else
                                         "\n  fix: yours to add (the pipeline reads it)")
              + (f"\n  note: {step.note}" if step.note else ""))
    if not process:
        print("missing: the PROCESS privilege (GRANT PROCESS ON *.* TO the ETL user): without "
              "it the window relies on ETL_OVERLAP_SECONDS alone")
    if not steps:
        print(f"ready: {source_mysql.where(settings)} has what the pipeline needs")
    return EXIT_OK if not steps else EXIT_USAGE


def status_main(argv: Sequence[str] | None = None, prog: str = "ewallet-etl status") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Where every pipeline stands: checkpoint or position, the "
        "warehouse it is tied to, lag, the last runs, quarantined rows. Read-only: creates "
        "nothing (a warehouse without the schema is shown as such). Exit 0 when both sides "
        "were read, 1 when the source or the warehouse is unreachable (the other side is "
        "still shown).",
        epilog=reads(MYSQL_VARS, WAREHOUSE_VARS, "ETL_PIPELINE_NAME ETL_MAX_LAG_SECONDS "
                     "CDC_STREAM_NAME"))
    parser.add_argument("--json", action="store_true", help="one JSON document, for machines")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    settings = configured(args)
    if settings is None:
        return EXIT_USAGE
    from ewallet_etl.pipelines.status import status

    try:
        report = status(settings)
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        return _fail(exc, False)
    print(report.to_json() if args.json else report.to_text())
    return EXIT_OK if report.complete else EXIT_FAILED  # what could be read is shown either way


def report_main(argv: Sequence[str] | None = None, prog: str = "ewallet-etl report") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="The daily-volume report: sales count and amount per day and "
        "amount category, with each day's reconciliation status; printed as a table and "
        "drawn as a PNG chart (matplotlib: the extra `dagster`).",
        epilog="Exit 4 when a day differs from the source. " + reads(MYSQL_VARS, WAREHOUSE_VARS))
    parser.add_argument("--out", type=Path, default=Path("daily_volume.png"),
                        help="the chart's file (default: daily_volume.png)")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    settings = configured(args)
    if settings is None:
        return EXIT_USAGE
    from ewallet_etl.pipelines.report import daily_volume, write_chart

    try:
        report = daily_volume(settings)
        write_chart(report, args.out)
    except ModuleNotFoundError as exc:
        log.error("the chart needs %s: pip install 'ewallet-etl[dagster]'", exc.name)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        return _fail(exc, False)
    from ewallet_etl.warehouse import format_table

    print(format_table(["day", "category", "sales", "amount", "reconciled"], report.rows()))
    log.info("chart written to %s", args.out)
    return EXIT_MISMATCH if report.differing_days else EXIT_OK


def sql_main(argv: Sequence[str] | None = None, prog: str = "python -m ewallet_etl.sql") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run SQL against the configured warehouse (CLICKHOUSE_URL, chDB or server) "
        "and print the result as a table. The database name analytics_dw is mapped to the "
        "configured one.",
        epilog=reads(WAREHOUSE_VARS),
    )
    parser.add_argument("sql", nargs="?", help="a SQL statement")
    parser.add_argument("-f", "--file", type=Path, help="a .sql file (one statement)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="an aligned table (default), CSV with a header, or a JSON array")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    if bool(args.sql) == bool(args.file):
        parser.error("give either SQL or --file")
    settings = configured(args)
    if settings is None:
        return EXIT_USAGE
    from ewallet_etl.warehouse import open_warehouse

    try:
        text = args.file.read_text() if args.file else args.sql
    except OSError as exc:
        log.error("cannot read %s: %s", args.file, exc.strerror or exc)
        return EXIT_USAGE
    try:
        wh = open_warehouse(settings, schema=False)  # a query creates nothing
        try:
            names, rows = wh.query_with_names(text.strip().rstrip(";"))
        finally:
            wh.close()
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        return _fail(exc, False)
    print(render(names, rows, args.format))
    return EXIT_OK


def render(names: list[str], rows: list[tuple], fmt: str) -> str:
    """A query result as `table`, `csv` or `json` (decimals and times as exact text)."""
    if fmt == "table":
        from ewallet_etl.warehouse import format_table

        return format_table(names, rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(["" if v is None else _text(v) for v in row] for row in rows)
        return out.getvalue().rstrip("\n")
    return json.dumps([{n: None if v is None else _json(v)
                        for n, v in zip(names, row, strict=True)} for row in rows],
                      ensure_ascii=False)


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def _json(value: object) -> object:
    if isinstance(value, (bool, int, float, str)):
        return value
    return _text(value)  # Decimal stays exact as text; dates and times ISO
