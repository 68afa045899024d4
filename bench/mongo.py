"""The MongoDB source, measured beside the server's own read speed, in one run.

    .venv/bin/python bench/mongo.py [--docs 100000] [--changes 10000] [--engines server,chdb]
    .venv/bin/python bench/mongo.py --docs 2000 --changes 200    # a quick check of the bench

On the local stack's MongoDB server (SecantusDB here; scripts/stack.sh up mongodb):
  scan floor   a plain pymongo scan of the same documents (find, batch_size = ETL_CHUNK_ROWS,
               each document decoded, the load's codec options), as its own process timed
               like the loads (GNU time: wall and peak RSS): what this server can give at all
  stream floor reading the same CHANGES events from the change stream (updateLookup, as the
               stream does) without applying them, its own process too
  full load    `etl_pipeline.py --source mongodb --full-refresh` per engine: documents/s end
               to end (process start to exit) and peak RSS
  stream       `cdc-stream.py --source mongodb` per engine, a bounded run applying CHANGES
               updated documents from the change stream (its first, untimed run copies)
Every load is checked: the facts of source mongodb equal the documents' count and sum.
Results: bench/results/mongo.json and .md. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import timezone
from decimal import Decimal
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import methods as m
from bson import json_util
from bson.decimal128 import Decimal128
from common import ROOT, ClickHouseServer, clickhouse_client
from pymongo import MongoClient

sys.path.insert(0, str(ROOT / "seed"))
import mongodb_seed  # noqa: E402

RESULTS = ROOT / "bench" / "results"
WORK = Path("/tmp/ewallet-bench-mongo")
URL = "mongodb://127.0.0.1:37017/?replicaSet=secantus"
PYTHON = sys.executable
TOTALS = ("SELECT count(), toString(sum(amount)) FROM (SELECT * FROM analytics_dw.fact_sales "
          "FINAL) WHERE _deleted = 0 AND source = 'mongodb'")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/mongo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--changes", type=int, default=10_000)
    p.add_argument("--engines", default="server,chdb")
    p.add_argument("--prefix", default="bmg")
    p.add_argument("--floor", choices=("scan", "stream"), help=argparse.SUPPRESS)
    p.add_argument("--database", help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.floor:  # a child process: one floor, timed by the parent
        return _floor_child(args)
    client: MongoClient = MongoClient(URL, tz_aware=True)
    db_name = f"{args.prefix}_source"
    client.drop_database(db_name)
    coll = client[db_name]["transactions"]
    now = client.admin.command("hello")["localTime"].replace(tzinfo=timezone.utc)
    print(f"inserting {args.docs:,} documents", flush=True)
    docs = list(mongodb_seed.generated(args.docs, now))
    for start in range(0, len(docs), 5_000):
        coll.insert_many(docs[start:start + 5_000], ordered=False)
    coll.create_index([("updated_at", 1), ("_id", 1)])
    want = (args.docs, sum((d["amount"].to_decimal() for d in docs), Decimal(0)))
    del docs
    rows = [_floor_row("scan", "plain pymongo scan (floor)", args.docs,
                       [PYTHON, "bench/mongo.py", "--floor", "scan", "--database", db_name,
                        "--docs", str(args.docs)])]
    print(rows[-1], flush=True)
    server = ClickHouseServer.from_env()
    targets = _targets(args.prefix, [e for e in args.engines.split(",") if e], server, db_name)
    for target in targets:
        target["prep"]()
        run = m.timed([PYTHON, "etl_pipeline.py", "--source", "mongodb", "--full-refresh"],
                      target["env"])
        rows.append(_row(target, "full load (etl_pipeline.py --source mongodb)", args.docs,
                         run, target["totals"]() == want))
        print(rows[-1], flush=True)
    for target in targets:  # the stream's first run: the copy, untimed
        run = m.timed([PYTHON, "cdc-stream.py", "--source", "mongodb"], target["env"])
        assert run.returncode == 0, run.stderr
    with coll.watch() as stream:  # where the changes start: the stream floor reads from here
        token = json_util.dumps(stream.resume_token)
    later = client.admin.command("hello")["localTime"].replace(tzinfo=timezone.utc)
    picked = [d["_id"] for d in coll.find({}, {"_id": 1}).limit(args.changes)]
    for n, doc_id in enumerate(picked):
        coll.update_one({"_id": doc_id}, {"$set": {"amount": Decimal128(f"{n + 1}.00"),
                                                   "updated_at": later}})
    want = (args.docs, _collection_sum(coll))
    rows.append(_floor_row("stream", "change stream read, not applied (floor)", len(picked),
                           [PYTHON, "bench/mongo.py", "--floor", "stream", "--database",
                            db_name, "--changes", str(len(picked)), "--token", token]))
    print(rows[-1], flush=True)
    for target in targets:
        run = m.timed([PYTHON, "cdc-stream.py", "--source", "mongodb"], target["env"])
        rows.append(_row(target, "change stream (cdc-stream.py --source mongodb)",
                         len(picked), run, target["totals"]() == want))
        print(rows[-1], flush=True)
    doc = {"documents": args.docs, "changes": len(picked), "results": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mongo.json").write_text(json.dumps(doc, indent=2))
    (RESULTS / "mongo.md").write_text(_markdown(doc))
    print(_markdown(doc))
    client.drop_database(db_name)
    client.close()
    return 0 if all(r["check"] for r in rows) else 1


def _floor_row(engine: str, method: str, n: int, argv: list[str]) -> dict:
    run = m.timed(argv, {})
    return {"engine": f"mongodb ({engine})", "method": method, "documents": n,
            "seconds": round(run.wall, 3), "docs_per_s": round(n / run.wall),
            "peak_rss_mib": round(run.peak_rss_mib), "check": run.returncode == 0}


def _floor_child(args: argparse.Namespace) -> int:
    """The floor itself, in a process of its own: exit 0 when it saw every document/event."""
    from ewallet_etl.sources.mongodb import CODEC

    client: MongoClient = MongoClient(URL)
    coll = client.get_database(args.database, codec_options=CODEC)["transactions"]
    try:
        if args.floor == "scan":
            seen = sum(1 for _ in coll.find({}).batch_size(20_000))
            return 0 if seen == args.docs else 1
        seen = 0
        with coll.watch(full_document="updateLookup", resume_after=json_util.loads(args.token),
                        max_await_time_ms=1000) as stream:
            while seen < args.changes:
                if stream.try_next() is not None:
                    seen += 1
        return 0
    finally:
        client.close()


def _collection_sum(coll) -> Decimal:
    return sum((d["amount"].to_decimal() for d in coll.find({}, {"amount": 1})), Decimal(0))


def _row(target: dict, method: str, n: int, run: m.Run, ok: bool) -> dict:
    return {"engine": target["engine"], "method": method, "documents": n,
            "seconds": round(run.wall, 3), "docs_per_s": round(n / run.wall),
            "peak_rss_mib": round(run.peak_rss_mib), "check": run.returncode == 0 and ok}


def _targets(prefix: str, engines: list[str], server: ClickHouseServer, db_name: str) -> list:
    client = clickhouse_client(server)
    out = []
    for engine in engines:
        db = f"{prefix}_{engine}"
        env = {"MONGODB_URL": URL, "MONGODB_DATABASE": db_name, "LOG_LEVEL": "INFO",
               "ETL_CHUNK_ROWS": "20000"}
        if engine == "server":
            env["CLICKHOUSE_URL"] = server.url(db)

            def prep(db: str = db) -> None:
                client.execute(f"DROP DATABASE IF EXISTS {db}")

            def totals(db: str = db) -> tuple[int, Decimal]:
                n, total = client.execute(TOTALS.replace("analytics_dw", db))[0]
                return int(n), Decimal(total)
        else:
            folder = WORK / engine
            env["CLICKHOUSE_URL"] = f"chdb://{folder}?database={db}"

            def prep(folder: Path = folder) -> None:
                shutil.rmtree(folder, ignore_errors=True)

            def totals(folder: Path = folder, db: str = db) -> tuple[int, Decimal]:
                n, total = m.chdb_sql(folder, TOTALS.replace("analytics_dw", db)).split("\t")
                return int(n), Decimal(total.strip())
        out.append({"engine": "clickhouse-server" if engine == "server" else "chdb",
                    "env": env, "prep": prep, "totals": totals})
    return out


def _markdown(doc: dict) -> str:
    floors = {r["engine"]: r["docs_per_s"] for r in doc["results"] if "floor" in r["method"]}
    lines = [f"# MongoDB source: {doc['documents']:,} documents, {doc['changes']:,} changes", "",
             "| engine | method | documents | seconds | docs/s | x floor | peak RSS MiB | check |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['engine']} | {r['method']} | {r['documents']:,} | {r['seconds']} | "
              f"{r['docs_per_s']:,} | {r['docs_per_s'] / _floor_of(r, floors):.2f} | "
              f"{r['peak_rss_mib']} | "
              f"{'ok' if r['check'] else 'FAILED'} |" for r in doc["results"]]
    return "\n".join(lines) + "\n"


def _floor_of(row: dict, floors: dict[str, int]) -> int:
    """A stream row is measured against the stream floor, everything else against the scan."""
    if row["engine"].startswith("mongodb"):
        return floors[row["engine"]]
    return floors["mongodb (stream)" if "stream" in row["method"] else "mongodb (scan)"]


if __name__ == "__main__":
    sys.exit(main())
