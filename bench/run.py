"""The benchmark, one command: generate the data set in MariaDB, then time every method on it,
each in its own process, alternating methods, and print / save one table.

    .venv/bin/python bench/run.py [--rows N] [--engines server,chdb] [--repeat 3] [--scale 10]

Groups, in order (all on the same source database):
  full         the floor (mariadb client), each engine's own INSERT ... SELECT FROM mysql() pull
               (the reference), our full load and full refresh, the naive write-up pipeline,
               dlt and the peer tools (bench/peers.py; each if installed)
  incremental  after 10,000 updates + 10,000 inserts in the source (new ones each repetition)
  cdc          cdc-stream.py replaying N_EVENTS JSON Lines events (skipped if it is missing)
  binlog       cdc-stream.py --source binlog after N_EVENTS / 5 row changes as single-row
               statements, then after N_EVENTS as 100-row statements
  scale        on a source --scale times larger (10M rows): the server's pull, each engine's
               first load, the connectorx -> chDB copy, then an incremental run of the same
               changes and a no-op run per engine (how time and memory grow with the data)
Every method's result is read back and compared with the source (`check`). Nothing is
asserted about speed. Results: bench/results/latest.json and latest.md (git-ignored).
Needs the local stack (scripts/stack.sh up); the naive and dlt baselines run in .venv-bench
(scripts/setup.sh --bench), and are skipped without it.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import cdc_events
import common  # noqa: F401  (puts the repository on sys.path)
import gen_data
import methods as m
import peers
import report
from common import (
    ROOT,
    ClickHouseServer,
    baseline_has,
    clickhouse_client,
    mysql_conn,
    source_settings,
)

from ewallet_etl.config import IDENTIFIER

RESULTS = ROOT / "bench" / "results"
WORK = Path("/tmp/ewallet-bench")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="transactions (default 1M)")
    p.add_argument("--engines", default="server,chdb", help="server,chdb (default both)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per method (median)")
    p.add_argument("--scale", type=int, default=10,
                   help="the scale group on a source this many times larger (default 10: "
                   "10M rows); 0 skips it")
    p.add_argument("--changes", type=int, default=10_000,
                   help="updates and as many inserts before each incremental run")
    p.add_argument("--events", type=int, default=100_000,
                   help="CDC events to replay, and binlog row changes as 100-row statements "
                   "(a fifth as many as single-row statements)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive pipeline")
    p.add_argument("--no-dlt", action="store_true", help="skip dlt")
    p.add_argument("--no-peers", action="store_true",
                   help="skip the peer tools (bench/peers.py: plain mysql() copy, "
                   "connectorx -> chDB, ingestr, sling)")
    p.add_argument("--keep-source", action="store_true",
                   help="reuse bench_source if it already has --rows transactions")
    p.add_argument("--prefix", default="bench",
                   help="names of everything it creates: PREFIX_source (MariaDB), PREFIX_dw, "
                   "_ref, _naive, _cdc (ClickHouse), WORK/PREFIX (chDB folders); default bench")
    p.add_argument("--work", type=Path, default=WORK, help=f"scratch folder (default {WORK})")
    p.add_argument("--cleanup", action="store_true",
                   help="drop the databases and folders it created when done")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = p.parse_args(argv)
    if not IDENTIFIER.match(args.prefix):
        p.error("--prefix must be letters, digits and _")
    args.source_db = f"{args.prefix}_source"
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not set(args.engines) <= {"server", "chdb"}:
        p.error("--engines takes server and/or chdb")
    return args


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_group(group: list[m.Method], repeat: int, warmup: bool = False) -> None:
    """Alternate: A B C, A B C, ... so drift and noise spread over every method."""
    for n in range(repeat + (1 if warmup else 0)):
        for method in group:
            if method.prep:
                method.prep()
            run = m.timed(method.argv, method.env)
            label = "warm-up" if warmup and n == 0 else f"run {n + (0 if warmup else 1)}"
            say(f"{method.key:<62} {label}: {run.wall:7.3f} s {run.peak_rss_mib:6.0f} MiB"
                + ("" if run.returncode == 0 else f"  FAILED rc={run.returncode}"))
            if run.returncode != 0:
                say(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no stderr")
            if not (warmup and n == 0):
                method.runs.append(run)


def catch_up(incremental: list[m.Method]) -> None:
    """Run each incremental command once more, untimed, for what a timed run left for later."""
    run_group([m.Method(x.name, x.engine, "catch-up", x.argv, x.env) for x in incremental], 0,
              warmup=True)


def check(group: list[m.Method], expected: dict) -> None:
    for method in group:
        if method.check is None or not method.runs or method.runs[-1].returncode != 0:
            continue
        got = method.check()
        ok = all(got.get(k) == expected.get(k) for k in ("rows", "sum_amount", "sales"))
        method.checked = {"ok": ok, "got": got, "expected": expected}
        if not ok:
            say(f"CHECK MISMATCH {method.key}: {got} != {expected}")


def source_ready(db: str, rows: int) -> bool:
    try:
        return gen_data.source_totals(db)["rows"] == rows
    except Exception:  # noqa: BLE001  (no such database yet)
        return False


def generate(db: str, rows: int, keep: bool) -> None:
    if keep and source_ready(db, rows):
        say(f"reusing {db} ({rows:,} transactions)")
        return
    start = time.perf_counter()
    gen_data.generate(db, rows)
    say(f"generated {db}: {rows:,} transactions in {time.perf_counter() - start:.1f} s")


def wait_for_quiet_source(timeout: float = 60) -> None:
    """Call right after changing the source. The pipeline's window ends 1 s before the oldest
    open writing InnoDB transaction of anyone on this shared server: wait until every such
    transaction started well after our changes, so the next run sees all of them."""
    after = time.time() + 2  # the 1 s margin, plus trx_started's whole seconds
    time.sleep(2)
    conn = mysql_conn(None)
    deadline = time.time() + timeout
    with conn.cursor() as cur:
        while time.time() < deadline:
            cur.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                        "WHERE trx_started <= FROM_UNIXTIME(%s) "
                        "AND (trx_rows_modified > 0 OR trx_query IS NOT NULL) "
                        "AND trx_mysql_thread_id <> CONNECTION_ID()", (after,))
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.5)
        else:
            say("an old transaction is still open on the source: the run may see fewer rows")
    conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Measure the package as deployed: byte-compiled (the image does it; PYTHONDONTWRITEBYTECODE
    # would otherwise make every timed process compile it again).
    compileall.compile_dir(ROOT / "ewallet_etl", quiet=1)
    work = args.work / args.prefix
    work.mkdir(parents=True, exist_ok=True)
    settings = source_settings()
    server = ClickHouseServer.from_env()
    ctx = m.Ctx(args.prefix, args.source_db, args.rows, server, work, {
        "MYSQL_HOST": settings.mysql_host, "MYSQL_PORT": str(settings.mysql_port),
        "MYSQL_USER": settings.mysql_user, "MYSQL_PASSWORD": settings.mysql_password})
    ch_version = clickhouse_client(server).execute("SELECT version()")[0][0]
    conn = mysql_conn(None)
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        mariadb_version = cur.fetchone()[0]
    conn.close()
    doc = {"machine": report.machine(ch_version, mariadb_version), "params": vars(args) | {
        "out": str(args.out), "rss_source": m.RSS_SOURCE}}

    generate(args.source_db, args.rows, args.keep_source)
    full = [m.floor_method(ctx, args.rows)]
    if "server" in args.engines:
        naive = not args.no_naive and baseline_has("pandas", "mysql.connector", "clickhouse_driver")
        if not args.no_naive and not naive:
            say("no baselines' venv (.venv-bench): skipping the naive pipeline and dlt; "
                "scripts/setup.sh --bench installs it")
        full += m.server_methods(ctx, args.source_db, args.rows, naive=naive)
    if "chdb" in args.engines:
        full += m.chdb_methods(ctx, args.source_db, args.rows)
    dlt = None if args.no_dlt else m.dlt_method(ctx, args.rows)
    if dlt:
        full.append(dlt)
    if not args.no_peers:
        full += peers.peer_methods(ctx, args.rows, args.engines)
    say("full loads")
    run_group(full, args.repeat, warmup=True)
    expected = gen_data.source_totals(args.source_db)
    check(full, expected)
    doc["source"] = expected

    say("incremental loads")
    incremental = m.incremental_methods(ctx, args.engines, 2 * args.changes)
    for n in range(args.repeat):
        gen_data.mutate(args.source_db, args.changes, args.changes,
                        first_new=args.rows + 1 + n * args.changes, salt=str(n))
        wait_for_quiet_source()
        run_group(incremental, 1)
    # An open transaction of anyone else on the shared server holds the window's end below it
    # (the watermark rule): what a run left for later, an untimed catch-up run loads.
    catch_up(incremental)
    check(incremental, gen_data.source_totals(args.source_db))
    noop = m.noop_methods(incremental)
    run_group(noop, args.repeat)
    check(noop, gen_data.source_totals(args.source_db))
    incremental += noop

    cdc: list[m.Method] = []
    if (ROOT / "cdc-stream.py").exists() and args.events:
        events = work / "cdc_events.jsonl"
        cdc_expected = cdc_events.write_events(events, args.events)
        cdc = m.cdc_methods(ctx, args.engines, events, args.events)
        say(f"CDC replay of {args.events:,} events")
        run_group(cdc, args.repeat)
        check(cdc, cdc_expected)
    else:
        say("cdc-stream.py not found: CDC replay skipped")

    binlog: list[m.Method] = []
    if m.binlog_available() and args.events:
        m.reset_binlog_replicas(ctx)
        next_id = args.rows + 10**8
        for n_workload, (per_statement, n_changes) in enumerate(
                ((1, args.events // 5), (100, args.events))):
            workload = ("single-row statements" if per_statement == 1
                        else f"{per_statement}-row statements")
            methods = m.binlog_methods(ctx, args.engines, n_changes, workload)
            say(f"binlog CDC of {n_changes:,} row changes as {workload}")
            first = 0 if n_workload == 0 else 1  # run 0: untimed, snapshots the tables
            for n in range(first, args.repeat + 1):
                if n:
                    gen_data.binlog_changes(args.source_db, n_changes, next_id, per_statement)
                    next_id += n_changes
                run_group(methods, 0 if n == 0 else 1, warmup=n == 0)
            check(methods, gen_data.source_totals(args.source_db))
            binlog += methods
    else:
        say("cdc-stream.py has no --source binlog yet: binlog CDC skipped (hook ready)")

    scale: list[m.Method] = []
    if args.scale > 1:
        scale = run_scale(ctx, args)

    rows = [report.summarise(x) for x in [*full, *incremental, *cdc, *binlog, *scale]]
    report.add_ratios(rows)
    doc["results"] = rows
    doc["targets"] = report.targets(rows)
    report.write(args.out, args.out.with_suffix(".md"), doc)
    print(report.table(rows))
    print()
    print(report.targets_table(doc["targets"]))
    say(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    if args.cleanup:
        cleanup(ctx, [args.source_db, f"{args.source_db}_x{args.scale}"])
    failed = [r for r in rows if r["failed"] or (r["check"] and not r["check"]["ok"])]
    return 1 if failed else 0


def run_scale(ctx: m.Ctx, args: argparse.Namespace) -> list[m.Method]:
    """The same methods on a source `--scale` times larger (10M rows by default): the server's
    pull, each engine's first load and its raw-copy floor, the connectorx -> chDB raw copy;
    then 10,000 updates + 10,000 inserts and an incremental run per engine, and a run with
    nothing to load (the engine's floor at this size), each `--repeat` times like the 1x
    group's. How time and memory grow with the data."""
    big_db, big_rows = f"{args.source_db}_x{args.scale}", args.rows * args.scale
    generate(big_db, big_rows, args.keep_source)
    big = replace(ctx, source_db=big_db, rows=big_rows)
    run_group([m.floor_method(big, big_rows)], 0, warmup=True)  # read the pages once
    loads: list[m.Method] = []
    if "server" in args.engines:
        loads += [x for x in m.server_methods(big, big_db, big_rows, naive=False)
                  if x.name not in (m.FULL_REFRESH, m.SERVER_ONLY_LOAD)]
    if "chdb" in args.engines:
        loads += [x for x in m.chdb_methods(big, big_db, big_rows)
                  if x.name in (m.FIRST_LOAD, m.RAW_FLOOR)]
        copy = None if args.no_peers else peers.cx_chdb_method(big, big_rows)
        if copy:
            loads.append(copy)
    for x in loads:
        x.group = "scale"
    say(f"scale: {big_rows:,} rows")
    run_group(loads, 1)
    check(loads, gen_data.source_totals(big_db))
    changed = [replace(x, env={**x.env, "MYSQL_DATABASE": big_db}, group="scale", runs=[])
               for x in m.incremental_methods(ctx, args.engines, 2 * args.changes)]
    # As often as the 1x group's (new changes each time): the 10x / 1x ratios compare medians,
    # not one run of a second against three.
    for n in range(args.repeat):
        gen_data.mutate(big_db, args.changes, args.changes,
                        first_new=big_rows + 1 + n * args.changes, salt=f"scale{n}")
        wait_for_quiet_source()
        run_group(changed, 1)
    catch_up(changed)
    check(changed, gen_data.source_totals(big_db))
    noop = [replace(x, group="scale", runs=[]) for x in m.noop_methods(changed)]
    run_group(noop, args.repeat)
    check(noop, gen_data.source_totals(big_db))
    if args.keep_source:  # kept for the next run: its generated count again (not 10 minutes)
        gen_data.drop_new(big_db, big_rows + 1)
    else:  # the big table would crowd the shared server's buffer pool
        drop_source(big_db)
    return [*loads, *changed, *noop]


def drop_source(database: str) -> None:
    conn = mysql_conn(None)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    conn.close()


def cleanup(ctx: m.Ctx, source_dbs: list[str]) -> None:
    client = clickhouse_client(ctx.server)
    for role in ("dw", "ref", "naive", "cdc", "binlog", "peers", "dw_server_only"):
        client.execute(f"DROP DATABASE IF EXISTS {ctx.db(role)}")
    for db in source_dbs:
        drop_source(db)
    shutil.rmtree(ctx.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
