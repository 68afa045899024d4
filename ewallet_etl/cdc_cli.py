"""`cdc-stream.py`: flags, logging and exit codes of the CDC commands; the work is in
`pipelines/replay.py` (a file of change events) and `pipelines/binlog.py` (the live binlog).

Exit codes (core/exit_codes.py): 0 every event applied, 1 failed (a re-run of the same input
repairs whatever landed), 2 bad usage or configuration (an unreadable input included),
3 completed with rejects (valid events applied, bad ones in `analytics_dw.etl_quarantine`).
Events of the other version scheme than the one `cdc_transactions` is fed by are refused one
by one by a replay (3); a binlog run on such a replica does not start (2) until
`--reset-replica`.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import uuid
from datetime import datetime, timezone
from typing import Sequence, TextIO

from ewallet_etl.cli import (
    MONGODB_VARS,
    MYSQL_VARS,
    WAREHOUSE_VARS,
    add_output_flags,
    configured,
    interrupted,
    reads,
)
from ewallet_etl.config import Settings
from ewallet_etl.core.defaults import DEFAULT_BATCH_SIZE
from ewallet_etl.core.errors import Interrupted, one_line
from ewallet_etl.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_REJECTS, EXIT_USAGE

log = logging.getLogger(__name__)
STREAM_VARS = "CDC_STREAM_NAME CDC_SERVER_ID CDC_BATCH_EVENTS CDC_BATCH_MS ETL_CHUNK_ROWS"
CDC_ENVIRONMENT = reads(MYSQL_VARS, WAREHOUSE_VARS, "CDC_STAR_SCHEMA", "(binlog:", STREAM_VARS,
                        "; mongodb:", MONGODB_VARS + ")")
EXITS = ("Exit codes: 0 ok, 1 failed (re-run to repair), 2 usage or configuration, "
         "3 completed with rejects, 130/143 interrupted. ")

# The default FILE: the sample of 32 events shipped inside the package (the same as the
# repository's cdc_events.json), so `ewallet-etl cdc replay` works from any folder.
DEFAULT_INPUT = "cdc_events.json"
# binlog: the live reader (pipelines/binlog.py; docs/binlog-cdc.md)
# mongodb: the MongoDB change stream (pipelines/mongo_stream.py; docs/mongodb.md)
SOURCES = ["file", "binlog", "mongodb"]


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _database_name(text: str) -> str:
    """Only compared with Debezium's source.db, never put into SQL: any MySQL name will do."""
    if not 0 < len(text) <= 64 or not text.isprintable():
        raise argparse.ArgumentTypeError("a database name: 1 to 64 printable characters")
    return text


def sample_path() -> str:
    """The packaged sample's path (a plain file: the package is installed unzipped)."""
    from importlib.resources import files

    return str(files("ewallet_etl") / "samples" / DEFAULT_INPUT)


def build_parser(prog: str = "cdc-stream.py") -> argparse.ArgumentParser:
    """The root script's parser: every kind in one, chosen by --source / --reset-replica."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Replay change events (insert/update/delete of transactions) into "
        "analytics_dw.cdc_transactions, a ReplacingMergeTree: idempotent and order-proof. "
        "Formats, detected automatically: a JSON array or JSON Lines of flat events "
        "(op, transaction_id, columns, _version), or Debezium change events. Bad events are "
        "quarantined in analytics_dw.etl_quarantine; the valid ones are applied.",
        epilog="Exit codes: 0 ok, 1 failed (re-run to repair), 2 usage, "
        "3 completed with rejects. Query the result through analytics_dw.v_cdc_transactions. "
        + CDC_ENVIRONMENT,
    )
    _replay_flags(parser)
    parser.add_argument("--source", choices=SOURCES, default="file",
                        help="where events come from (default: file)")
    parser.add_argument("--follow", action="store_true",
                        help="binlog, mongodb: keep streaming until SIGTERM (default: apply "
                        "what is there at start, save the position and exit)")
    parser.add_argument("--resnapshot", action="store_true",
                        help="binlog, mongodb: copy the tables (the collection) again and "
                        "stream from there (needed when the saved position or resume token "
                        "is no longer on the server)")
    parser.add_argument("--reset-replica", action="store_true",
                        help="empty the CDC replicas (cdc_transactions, cdc_users, "
                        "cdc_merchants), the binlog position and the version-scheme claim, "
                        "then exit: the next replay or binlog run starts them afresh (needed "
                        "to switch cdc_transactions between a file replay and the binlog)")
    add_output_flags(parser)
    return parser


def _replay_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", default=None, metavar="FILE",
                        help="events file, or - for stdin (default: the sample of 32 events "
                        "shipped in the package, ewallet_etl/samples/cdc_events.json)")
    parser.add_argument("--batch-size", type=_batch_size, default=DEFAULT_BATCH_SIZE,
                        metavar="N", help="events per reduce + bulk insert "
                        f"(default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--optimize", action="store_true",
                        help="run OPTIMIZE TABLE ... FINAL afterwards (housekeeping only; "
                        "reads are right without it)")
    parser.add_argument("--source-db", type=_database_name, metavar="NAME",
                        help="the source database of Debezium events (source.db); events "
                        "of other databases or tables are skipped (default: MYSQL_DATABASE)")


# `ewallet-etl cdc KIND`: one parser per kind, with only its own flags.
KINDS = {
    "replay": ("replay a file of change events (JSON array, JSON Lines or Debezium, detected) "
               "into the cdc_* replicas and the star schema",
               reads(MYSQL_VARS, WAREHOUSE_VARS, "CDC_STAR_SCHEMA")),
    "binlog": ("live CDC from the source's binlog: a snapshot the first time, then apply up to "
               "the current end and exit (--follow: keep streaming until SIGTERM)",
               reads(MYSQL_VARS, WAREHOUSE_VARS, STREAM_VARS, "CDC_STAR_SCHEMA")),
    "mongodb": ("the MongoDB collection's change stream into the star schema (a snapshot the "
                "first time; --follow: keep streaming until SIGTERM)",
                reads(MYSQL_VARS, WAREHOUSE_VARS, MONGODB_VARS,
                      "CDC_BATCH_EVENTS CDC_BATCH_MS ETL_CHUNK_ROWS")),
    "reset": ("empty the CDC replicas (cdc_transactions, cdc_users, cdc_merchants), the binlog "
              "position and the version-scheme claim, then exit: the next replay or binlog run "
              "starts them afresh", reads(MYSQL_VARS, WAREHOUSE_VARS)),
}


def kind_parser(kind: str, prog: str) -> argparse.ArgumentParser:
    text, environment = KINDS[kind]
    parser = argparse.ArgumentParser(prog=prog, description=text[0].upper() + text[1:] + ".",
                                     epilog=EXITS + environment)
    if kind == "replay":
        _replay_flags(parser)
    if kind in ("binlog", "mongodb"):
        parser.add_argument("--follow", action="store_true",
                            help="keep streaming until SIGTERM / Ctrl-C (default: apply what is "
                            "there at start, save the position and exit)")
        parser.add_argument("--resnapshot", action="store_true",
                            help="copy the tables (the collection) again and stream from there "
                            "(needed when the saved position or resume token is gone)")
    add_output_flags(parser)
    # what run_command reads, for the flags this kind does not have
    parser.set_defaults(source={"replay": "file"}.get(kind, kind), reset_replica=kind == "reset",
                        input=None, batch_size=DEFAULT_BATCH_SIZE, optimize=False,
                        source_db=None, follow=False, resnapshot=False)
    return parser


def cdc_usage() -> str:
    lines = ["usage: ewallet-etl cdc KIND [ARGS]   (`ewallet-etl cdc KIND --help` for each)", "",
             "Change streams into the cdc_* replicas and the star schema.", "", "kinds:"]
    lines += [f"  {kind:<8} {text}" for kind, (text, _) in KINDS.items()]
    return "\n".join([*lines, "", EXITS + CDC_ENVIRONMENT])


def cdc_kind_main(kind: str, argv: Sequence[str]) -> int:
    """`ewallet-etl cdc KIND ARGS`."""
    args = kind_parser(kind, f"ewallet-etl cdc {kind}").parse_args(argv)
    settings = configured(args)
    if settings is None:
        return EXIT_USAGE
    return run_command(settings, args)


def _open_input(name: str) -> TextIO:
    """The input as text; bytes that are not UTF-8 survive as surrogates and are refused."""
    if name == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8",
                                errors="surrogateescape", newline="")
    return open(name, encoding="utf-8", errors="surrogateescape", newline="")


def cdc_main(argv: Sequence[str] | None = None, prog: str = "cdc-stream.py") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.source == "file" and (args.follow or args.resnapshot):
        parser.error("--follow and --resnapshot need --source binlog or mongodb")
    settings = configured(args)
    if settings is None:
        return EXIT_USAGE
    return run_command(settings, args)


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run parsed arguments against `settings`; returns the exit code (tests call this)."""
    if args.reset_replica:
        return _reset(settings, args.debug)
    if args.source == "mongodb":
        from ewallet_etl.cli import mongodb_installed

        return _mongo_stream(settings, args) if mongodb_installed() else EXIT_USAGE
    if args.source == "binlog":
        try:
            from ewallet_etl.pipelines.binlog import binlog_main
        except ModuleNotFoundError as exc:  # the optional extra of a server-only install
            log.error("the binlog reader is not installed (%s): pip install 'ewallet-etl[binlog]'",
                      exc.name)
            return EXIT_USAGE

        try:
            return binlog_main(settings, follow=args.follow, resnapshot=args.resnapshot,
                               debug=args.debug)
        except (Interrupted, KeyboardInterrupt) as exc:  # abandoned: audited `interrupted`
            return interrupted(exc)
    if args.input is None:  # the default: the packaged sample, wherever this runs
        args.input = sample_path()
    try:
        stream = _open_input(args.input)
    except OSError as exc:
        log.error("cannot read %s: %s", args.input, exc.strerror or exc)
        return EXIT_USAGE
    log.info("cdc replay of %s -> %s", "stdin" if args.input == "-" else args.input,
             settings.warehouse.describe())
    from ewallet_etl.pipelines.replay import NoChangeEvents, run_replay
    from ewallet_etl.state.lineage import LineageError

    try:
        with stream:
            report = run_replay(settings, stream, args.input, args.batch_size, args.optimize,
                                args.source_db)
    except LineageError as exc:
        log.error("refused: %s", exc)
        return EXIT_USAGE
    except NoChangeEvents as exc:
        log.error("%s %s", "stdin" if args.input == "-" else args.input, exc)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        log.error("failed: %s", one_line(exc), exc_info=args.debug)
        return EXIT_FAILED
    log.info("%s", report.summary())
    return EXIT_REJECTS if report.rejected else EXIT_OK


def _mongo_stream(settings: Settings, args: argparse.Namespace) -> int:
    """--source mongodb: the change stream into the star schema. While it streams, a first
    SIGTERM/SIGINT stops it after the micro-batch in flight (its token saved); before that
    (connecting, the copy) and at a second signal the run is abandoned at once, as the binlog's
    (pipelines/stopping.py)."""
    from ewallet_etl.pipelines.mongo_stream import run_mongo_stream
    from ewallet_etl.pipelines.stopping import SignalStop

    try:
        with SignalStop().installed() as stop:
            report = run_mongo_stream(settings, follow=args.follow, resnapshot=args.resnapshot,
                                      stop=stop)
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except Exception as exc:
        log.error("failed: %s", one_line(exc), exc_info=args.debug)
        return getattr(exc, "exit_code", EXIT_FAILED)
    log.info("%s", report.summary())
    return EXIT_REJECTS if report.rejected else EXIT_OK


def _reset(settings: Settings, debug: bool) -> int:
    """--reset-replica: empty the CDC replicas and their claim (docs/change-events.md, "Reset")."""
    from ewallet_etl.audit import RunRecord, record_run
    from ewallet_etl.pipelines.replay import SOURCE
    from ewallet_etl.state.lineage import RESET_TABLES, reset_replicas
    from ewallet_etl.warehouse import open_warehouse

    started = datetime.now(timezone.utc)
    try:
        wh = open_warehouse(settings)
        try:
            reset_replicas(wh)
            record_run(wh, RunRecord(  # who emptied the replicas, and when
                run_id=uuid.uuid4().hex[:12], pipeline=SOURCE, mode="reset-replica",
                started_at=started, window_from="", window_to="", rows_read=0, rows_loaded=0,
                rows_rejected=0, status="success", error="",
                seconds=(datetime.now(timezone.utc) - started).total_seconds()))
        finally:
            wh.close()
    except (Interrupted, KeyboardInterrupt) as exc:
        return interrupted(exc, "before the replicas were emptied, or part way: run it again")
    except Exception as exc:
        log.error("failed: %s", one_line(exc), exc_info=debug)
        return EXIT_FAILED
    log.info("reset: emptied %s; the next replay or binlog run starts them afresh",
             ", ".join(RESET_TABLES))
    return EXIT_OK


