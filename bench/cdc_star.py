"""The binlog CDC into the star schema, next to the replicas alone, measured side by side.

    .venv/bin/python bench/cdc_star.py [--rows 100000] [--changes 20000] [--engines server,chdb]
                                       [--lag-samples 200]

On one generated source (MariaDB, the local stack):
  throughput  bounded `cdc-stream.py --source binlog` runs (default settings) applying CHANGES
              row changes written
              as single-row statements, then 5 x CHANGES as 100-row statements; each engine,
              with CDC_STAR_SCHEMA=false (the cdc_* replicas only, what the CDC did before) and
              true (replicas + fact_sales/dim_*), alternating. Rows/s end to end (process start
              to exit) and peak RSS.
  lag         a `--follow` stream per engine and mode, at CDC_BATCH_MS 1000 (the default) and
              100; one single-row commit every 50 ms;
              for each, the time from COMMIT returning to the row being visible in
              v_fact_sales (star) or v_cdc_transactions (replicas only), polled every 5 ms:
              p50 and p99. (chDB: the stream runs in a thread of this process, since a chDB
              folder admits one process; the server: a child process, as deployed.)
Checked after every run: v_cdc_transactions and (star mode) v_fact_sales equal the source's
count, sum and sales. Results: bench/results/cdc_star.json and .md. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import gen_data
import methods as m
from common import ROOT, ClickHouseServer, clickhouse_client, mysql_conn

RESULTS = ROOT / "bench" / "results"
WORK = Path("/tmp/ewallet-bench-cdc-star")
PYTHON = sys.executable
MODES = {"replicas only": "false", "replicas + star schema": "true"}
POLL_S, COMMIT_EVERY_S = 0.005, 0.05
LAG_BATCH_MS = ("1000", "100")  # the default micro-batch age, and a low-latency setting
BATCH_LINE = re.compile(r"batch: events=.* position=(\S+):(\d+)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/cdc_star.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--changes", type=int, default=20_000)
    p.add_argument("--engines", default="server,chdb")
    p.add_argument("--lag-samples", type=int, default=200)
    p.add_argument("--rate", type=int, default=1000,
                   help="commits/s of the loaded lag run (star schema, default CDC_BATCH_MS)")
    p.add_argument("--rate-seconds", type=int, default=15)
    p.add_argument("--prefix", default="bcs")
    args = p.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    source = f"{args.prefix}_source"
    server = ClickHouseServer.from_env()
    print(f"generating {args.rows:,} transactions in {source}", flush=True)
    gen_data.generate(source, args.rows)
    targets = _targets(args.prefix, engines, server)
    for target in targets:
        target["prep"]()
        run = m.timed(_argv(), target["env"])  # the snapshot, untimed
        assert run.returncode == 0, run.stderr
    rows: list[dict] = []
    next_id = args.rows + 10**8
    for per_statement, n_changes in ((1, args.changes), (100, 5 * args.changes)):
        gen_data.binlog_changes(source, n_changes, next_id, per_statement)
        next_id += n_changes
        for target in targets:  # every target applies the same changes, one after the other
            run = m.timed(_argv(), target["env"])
            ok = run.returncode == 0 and _checked(target, source)
            rows.append({"engine": target["engine"], "mode": target["mode"],
                         "workload": f"{per_statement}-row statements", "changes": n_changes,
                         "seconds": round(run.wall, 3),
                         "rows_per_s": round(n_changes / run.wall),
                         "peak_rss_mib": round(run.peak_rss_mib), "check": ok})
            print(rows[-1], flush=True)
    lags: list[dict] = []
    for batch_ms in LAG_BATCH_MS:
        for target in targets:
            tuned = {**target, "env": {**target["env"], "CDC_BATCH_MS": batch_ms}}
            lags.append({**_lag(tuned, source, args.lag_samples, next_id),
                         "batch_ms": int(batch_ms)})
            next_id += args.lag_samples
            print(lags[-1], flush=True)
    for target in targets:
        if not target["star"] or not args.rate:
            continue
        lags.append({**_lag_under_load(target, source, args.rate, args.rate_seconds, next_id),
                     "batch_ms": 1000})
        next_id += args.rate * args.rate_seconds
        print(lags[-1], flush=True)
    doc = {"rows": args.rows, "throughput": rows, "lag": lags}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cdc_star.json").write_text(json.dumps(doc, indent=2))
    (RESULTS / "cdc_star.md").write_text(_markdown(doc))
    print(_markdown(doc))
    return 0 if all(r["check"] for r in rows) and all(x["check"] for x in lags) else 1


def _targets(prefix: str, engines: list[str], server: ClickHouseServer) -> list[dict]:
    out = []
    client = clickhouse_client(server)
    for engine in engines:
        for mode, flag in MODES.items():
            tag = f"{engine}_{'star' if flag == 'true' else 'replica'}"
            db = f"{prefix}_{tag}"
            if engine == "server":
                url = server.url(db)

                def prep(db: str = db) -> None:
                    client.execute(f"DROP DATABASE IF EXISTS {db}")

                def query(sql: str, params: dict | None = None, db: str = db) -> list[tuple]:
                    text = re.sub(r"\{(\w+):[^}]+\}", r"%(\1)s", sql.replace("analytics_dw", db))
                    return client.execute(text, params)
            else:
                folder = WORK / tag
                url = f"chdb://{folder}?database={db}"

                def prep(folder: Path = folder) -> None:
                    subprocess.run(["rm", "-rf", str(folder)], check=True)

                def query(sql: str, folder: Path = folder, db: str = db) -> list[tuple]:
                    text = m.chdb_sql(folder, sql.replace("analytics_dw", db))
                    return [tuple(line.split("\t")) for line in text.strip().splitlines()]
            env = {"MYSQL_DATABASE": f"{prefix}_source", "CLICKHOUSE_URL": url,
                   "CDC_STAR_SCHEMA": flag, "CDC_STREAM_NAME": tag, "LOG_LEVEL": "INFO"}
            out.append({"engine": "clickhouse-server" if engine == "server" else "chdb",
                        "mode": mode, "env": env, "prep": prep, "query": query,
                        "star": flag == "true"})
    return out


def _argv(*extra: str) -> list[str]:
    return [PYTHON, "cdc-stream.py", "--source", "binlog", *extra]


def _checked(target: dict, source: str) -> bool:
    want = gen_data.source_totals(source)
    views = ["v_cdc_transactions"] + (["v_fact_sales"] if target["star"] else [])
    return all(m.as_totals(target["query"](m.totals_sql(f"analytics_dw.{v}"))[0]) == want
               for v in views)


def _follow(target: dict) -> tuple[subprocess.Popen, list, list[str]]:
    """Start the target's `--follow` stream; a thread keeps its log (`tail`) and, from its
    "batch: ... position=F:P" lines, when each micro-batch landed (`applied`)."""
    proc = subprocess.Popen(_argv("--follow"), env={**os.environ, **target["env"]}, cwd=ROOT,
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    applied: list[tuple[float, tuple[str, int]]] = []
    tail: list[str] = []

    def follow_log() -> None:
        for line in proc.stderr or ():
            tail.append(line)
            if found := BATCH_LINE.search(line):
                applied.append((time.perf_counter(), (found.group(1), int(found.group(2)))))

    threading.Thread(target=follow_log, daemon=True).start()
    return proc, applied, tail


def _lag(target: dict, source: str, samples: int, first_id: int) -> dict:
    """Commit-to-visible latency under a trickle of single-row commits, with --follow."""
    view = "v_fact_sales" if target["star"] else "v_cdc_transactions"
    sql = f"SELECT count() FROM analytics_dw.{view} WHERE transaction_id = {{tx:String}}"
    proc, applied, tail = _follow(target)
    if target["engine"] == "chdb":
        # A chDB folder admits one process, the stream's: nothing else can query it. Visible
        # here = the micro-batch holding the commit has landed, told by the stream's own log
        # line ("batch: ... position=F:P") at or past the commit's binlog position.
        view = "the stream's applied batch (chDB: one process per folder)"

        def visible(tx: str, end: tuple[str, int]) -> float | None:
            return next((at for at, position in applied if position >= end), None)
    else:
        def visible(tx: str, end: tuple[str, int]) -> float | None:
            found = target["query"](sql, {"tx": tx})[0][0]
            return time.perf_counter() if int(found) else None
    conn = mysql_conn(source)
    latencies = []
    try:
        time.sleep(5)  # the stream's start-up
        for n in range(samples):
            tx = f"LAG{first_id + n}"
            with conn.cursor() as cur:
                cur.execute("INSERT INTO transactions (transaction_id, user_id, merchant_id, "
                            "amount, status, transaction_time) VALUES (%s, 1, 1, 10.00, "
                            "'SUCCESS', '2025-02-01 10:00:00')", (tx,))
            committed = time.perf_counter()  # autocommit: the INSERT returned after COMMIT
            with conn.cursor() as cur:
                cur.execute("SHOW MASTER STATUS")
                file, pos = cur.fetchone()[:2]
            while (seen := visible(tx, (file, int(pos)))) is None:
                if time.perf_counter() - committed > 30:
                    raise RuntimeError(f"{tx} not visible in {view} after 30 s; the stream "
                                       f"said: {''.join(tail[-5:])}")
                time.sleep(POLL_S)
            latencies.append(seen - committed)
            time.sleep(max(COMMIT_EVERY_S - latencies[-1], 0))
    finally:
        proc.terminate()
        proc.wait(60)
        conn.close()
    cuts = statistics.quantiles(latencies, n=100)
    return {"engine": target["engine"], "mode": target["mode"], "view": view,
            "p50_s": round(cuts[49], 3), "p99_s": round(cuts[98], 3),
            "samples": len(latencies), "check": len(latencies) == samples}


def _lag_under_load(target: dict, source: str, rate: int, seconds: int, first_id: int) -> dict:
    """Commit-to-visible latency while a writer commits `rate` single-row transactions a
    second for `seconds`: every 20th commit is followed (its binlog end read right after it)
    until it is visible, as in `_lag`; each poll asks about every commit still waiting at
    once (one query), so a batch that lands many of them is timed when it lands."""
    sql = ("SELECT transaction_id FROM analytics_dw.v_fact_sales "
           "WHERE transaction_id IN {ids:Array(String)}")
    proc, applied, tail = _follow(target)
    sampled: list[tuple[str, float, tuple[str, int]]] = []
    total = rate * seconds
    done = threading.Event()

    def write() -> None:
        conn = mysql_conn(source)
        start = time.perf_counter()
        try:
            with conn.cursor() as cur:
                for n in range(total):
                    tx = f"RATE{first_id + n}"
                    cur.execute("INSERT INTO transactions (transaction_id, user_id, merchant_id, "
                                "amount, status, transaction_time) VALUES (%s, 1, 1, 10.00, "
                                "'SUCCESS', '2025-02-01 10:00:00')", (tx,))
                    if n % 20 == 0:
                        committed = time.perf_counter()
                        cur.execute("SHOW MASTER STATUS")
                        file, pos = cur.fetchone()[:2]
                        sampled.append((tx, committed, (file, int(pos))))
                    time.sleep(max(start + (n + 1) / rate - time.perf_counter(), 0))
        finally:
            writes.append(time.perf_counter() - start)
            conn.close()
            done.set()

    writes: list[float] = []
    latencies: list[float] = []
    try:
        time.sleep(5)  # the stream's start-up
        threading.Thread(target=write, daemon=True).start()
        followed = 0  # samples[:followed] seen; the rest are asked about together, each poll
        while not (done.is_set() and followed == len(sampled)):
            waiting = sampled[followed:followed + 200]
            if target["engine"] == "chdb":
                last = applied[-1] if applied else None
                seen = {tx for tx, _, end in waiting if last and last[1] >= end}
                at = last[0] if last else 0.0
            else:
                found = target["query"](sql, {"ids": tuple(tx for tx, _, _ in waiting)}) \
                    if waiting else []
                seen, at = {row[0] for row in found}, time.perf_counter()
            # commits become visible in order: count the seen prefix
            while followed < len(sampled) and sampled[followed][0] in seen:
                latencies.append(at - sampled[followed][1])
                followed += 1
            if followed < len(sampled) and time.perf_counter() - sampled[followed][1] > 60:
                raise RuntimeError(f"{sampled[followed][0]} not visible after 60 s; the stream "
                                   f"said: {''.join(tail[-5:])}")
            time.sleep(POLL_S)
    finally:
        proc.terminate()
        proc.wait(60)
    cuts = statistics.quantiles(latencies, n=100)
    achieved = total / writes[0] if writes else 0
    return {"engine": target["engine"], "mode": f"{target['mode']}, {achieved:,.0f} commits/s",
            "view": "the applied batch" if target["engine"] == "chdb" else "v_fact_sales",
            "p50_s": round(cuts[49], 3), "p99_s": round(cuts[98], 3),
            "samples": len(latencies), "check": len(latencies) == len(sampled) and
            achieved >= 0.9 * rate}


def _markdown(doc: dict) -> str:
    lines = [f"# Binlog CDC into the star schema ({doc['rows']:,}-row source)", "",
             "| engine | mode | workload | changes | seconds | rows/s | peak RSS MiB | check |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['engine']} | {r['mode']} | {r['workload']} | {r['changes']:,} | "
              f"{r['seconds']} | {r['rows_per_s']:,} | {r['peak_rss_mib']} | "
              f"{'ok' if r['check'] else 'FAILED'} |" for r in doc["throughput"]]
    lines += ["", "| engine | mode | CDC_BATCH_MS | visible in | p50 s | p99 s | samples |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {x['engine']} | {x['mode']} | {x['batch_ms']} | {x['view']} | {x['p50_s']} | "
              f"{x['p99_s']} | {x['samples']} |" for x in doc["lag"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
