"""The MongoDB batch load: wallet documents into the same star schema as MySQL's rows.

A run reads the documents changed in its window, `updated_at` in [low, high), streamed in
cursor batches of ETL_CHUNK_ROWS; flattens each (`core.documents`: the rules, coded once);
loads the good ones through the batch's own transform (`fact_sales` with source `mongodb`,
their users and merchants into `dim_users` / `dim_merchants`, which MySQL's ids share);
quarantines every refused document with its reason and raw JSON (source `mongodb`); then saves
its state (`etl_state`, kind `mongodb`, cursor `{"watermark_us"}`) after the data.

The window follows the MySQL watermark's thinking: `high` is the server's clock (not this
host's) minus ETL_LAG_SECONDS, and every run re-reads ETL_OVERLAP_SECONDS before its last
`high`, so a document whose `updated_at` was set just before `high` but committed after the
read passed it (a writer's clock behind the server's, a slow commit) is read by the next run.
Everything is idempotent: a re-read document lands at the same version.

A transaction id in both sources is one transaction (one row in fact_sales): the newest
`updated_at` wins, whichever source it came from, and the row says which (`source`). So is a
transaction id in several documents: the newest document gives it; a document that stops
carrying it (deleted, its transaction_id changed, refused without one) hands it to the newest
other carrier or, when there is none, tombstones it (`hand_over`, via `mongo_keys`: what each
`_id` carried when last loaded). A document refused after it loaded retracts its fact.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
from bson import json_util
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from ewallet_etl.audit import (
    RunRecord,
    close_dead_runs,
    count_reasons,
    quarantine_rows,
    record_run,
    record_start,
    refusals_table,
)
from ewallet_etl.config import Settings
from ewallet_etl.core import star, transform, value_rules
from ewallet_etl.core.documents import (
    FUTURE_TOLERANCE,
    BadDocument,
    Flat,
    doc_key,
    flatten,
    refused_version,
)
from ewallet_etl.core.errors import one_line, outcome
from ewallet_etl.core.events import KEY_PATTERN
from ewallet_etl.core.instants import EPOCH, from_micros, micros
from ewallet_etl.core.window import Window, next_window
from ewallet_etl.pipelines.progress import Progress
from ewallet_etl.retry import with_retries
from ewallet_etl.sources import mongodb as source_mongo
from ewallet_etl.state import store
from ewallet_etl.warehouse import Warehouse, open_warehouse, text_set

log = logging.getLogger(__name__)

KIND = "mongodb"
QUARANTINE_SOURCE = "mongodb"
MAX_RAW_CHARS = 65_536
# The transaction each document carried when last loaded (an IN subquery: one hash set, on
# ClickHouse 18.16 as on chDB, where has() on a long array is a scan per row).
KEYS_SQL = """
SELECT doc_id, argMax(transaction_id, _version), max(_version) FROM analytics_dw.mongo_keys
WHERE hex(doc_id) IN (SELECT arrayJoin(splitByChar(',', {values:String})))
GROUP BY doc_id
"""
# The hex text of the ids per lookup: well under 256 KiB, ClickHouse 18.16's max_query_size
# (parameters are part of the query text there).
KEY_TEXT_BYTES = 128 * 1024
STATE_SQL = """
SELECT max(visitParamExtractUInt(cursor, 'watermark_us')), count() FROM analytics_dw.etl_state
WHERE pipeline = {pipeline:String} AND kind = 'mongodb'
"""


@dataclass
class MongoReport:
    run_id: str
    mode: str
    started_at: datetime
    window: Window | None = None
    documents: int = 0
    loaded: int = 0
    rejected: int = 0
    sales: int = 0
    status: str = "running"
    error: str = ""
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        rate = self.documents / self.seconds if self.seconds > 0 else 0.0
        return (f"mongodb run {self.run_id} {self.mode} {self.status}: read={self.documents} "
                f"loaded={self.loaded} sales={self.sales} rejected={self.rejected} "
                f"window {self.window} in {self.seconds:.2f}s ({rate:.0f} docs/s)")


def pipeline_name(settings: Settings) -> str:
    return f"mongodb:{settings.mongodb_database}.{settings.mongodb_collection}"


@contextmanager
def audited_run(settings: Settings, report: MongoReport,
                pipeline: str) -> Iterator[tuple[Warehouse, MongoClient]]:
    """A MongoDB run's warehouse and client, its start row, dead runs closed, and its etl_runs
    row written whatever happens (the batch load's and the change stream's)."""
    clock = time.monotonic()
    wh = open_warehouse(settings)
    record_start(wh, report.run_id, pipeline, report.mode, report.started_at)
    client = source_mongo.connect(settings)
    try:
        close_dead_runs(wh, pipeline, report.run_id, exclusive=False)
        yield wh, client
        report.status = "completed_with_rejects" if report.rejected else "success"
    except PyMongoError as exc:  # one line naming the server, never the URI's secret
        report.status, report.error = "failed", one_line(exc)
        raise source_mongo.error(settings, exc) from exc
    except BaseException as exc:
        report.status, report.error = outcome(exc), one_line(exc)
        raise
    finally:
        client.close()
        report.seconds = time.monotonic() - clock
        audit(wh, pipeline, report)
        wh.close()


def run_mongo(settings: Settings, full_refresh: bool = False) -> MongoReport:
    report = MongoReport(uuid.uuid4().hex[:12], "full" if full_refresh else "incremental",
                         datetime.now(timezone.utc))
    pipeline = pipeline_name(settings)
    with audited_run(settings, report, pipeline) as (wh, client):
        coll = with_retries(lambda: source_mongo.collection(client, settings),
                            f"reach MongoDB at {source_mongo.where(settings)}",
                            settings.max_retries)
        now = source_mongo.server_now(client, settings)
        saved = _saved_watermark(wh, pipeline)
        if saved is None:
            report.mode = "full"
        report.window = next_window(saved, now, None, timedelta(seconds=settings.lag_seconds),
                                    timedelta(seconds=settings.overlap_seconds), full_refresh)
        log.info("mongodb window %s (server now %s)", report.window, now.isoformat())
        with_retries(lambda: _load(settings, coll, wh, report, now),
                     f"read MongoDB at {source_mongo.where(settings)}", settings.max_retries)
        store.save(wh, pipeline, KIND, {"watermark_us": micros(report.window.high)},
                   source_mongo.where(settings), report.run_id)
    return report


def _saved_watermark(wh: Warehouse, pipeline: str) -> datetime | None:
    ((newest, saves),) = wh.query(STATE_SQL, {"pipeline": pipeline})
    return from_micros(int(newest)) if saves else None


Carriers = Callable[[list[str]], list[dict[str, Any]]]


def _load(settings: Settings, coll: Any, wh: Warehouse, report: MongoReport,
          now: datetime) -> None:
    """The whole window, batch by batch; safe to run again from the start after a failure (a
    retry restarts the window: every write is idempotent)."""
    window = report.window
    assert window is not None
    report.documents = report.loaded = report.rejected = report.sales = 0
    report.reject_reasons = {}
    progress = Progress("documents read")
    full = window.low <= EPOCH
    for docs in source_mongo.documents(coll, window.low, window.high, settings.chunk_rows,
                                       settings, full, beyond=now + FUTURE_TOLERANCE):
        load_documents(wh, docs, report, now, carriers_of(coll, settings))
        progress.add(len(docs))


def carriers_of(coll: Any, settings: Settings) -> Carriers:
    return lambda ids: source_mongo.carrying(coll, ids, settings)


def load_documents(wh: Warehouse, docs: Sequence[dict[str, Any]], report: MongoReport,
                   now: datetime, carriers: Carriers) -> None:
    """One batch of documents into the star schema; refused ones into etl_quarantine, and what
    they loaded before retracted. `now`: the server's clock (the future starts at now +
    FUTURE_TOLERANCE); `carriers`: the source's documents carrying some transaction ids."""
    latest, now_us = now + FUTURE_TOLERANCE, micros(now)
    flats: list[Flat] = []
    raw: dict[str, dict[str, Any]] = {}
    carried: dict[str, tuple[str, int]] = {}  # doc_id -> (transaction_id, version) now
    refused: list[tuple[str, int, str, str]] = []  # key, version, reason, raw
    retract: list[tuple[str, int]] = []  # refused documents' transactions
    for doc in docs:
        key = doc_key(doc.get("_id"))
        try:
            flat = flatten(doc, latest)
            problem = value_rules.amount_problem(flat.amount)  # before Arrow's Decimal(18, 2)
            if problem:
                raise BadDocument(problem)
        except BadDocument as exc:
            version = refused_version(doc, latest, now_us)
            refused.append(_refusal(doc, str(exc), version))
            tx = _transaction_id(doc)
            if tx is not None:
                retract.append((tx, version))
                carried[key] = (tx, version)
            else:
                carried[key] = ("", version)
            continue
        flats.append(flat)
        raw[flat.transaction_id] = doc
        carried[key] = (flat.transaction_id, flat.version)
    report.documents += len(docs)
    # what each document carried before, read before this batch writes its own keys
    handed = _orphans(wh, carried)
    if flats:
        refused += _load_flats(wh, flats, raw, report)
    if retract:
        keys, versions = zip(*retract, strict=True)
        wh.insert("fact_sales", as_mongodb(star.tombstones(keys, versions)))
    if handed:
        hand_over(wh, handed, carriers, report, latest)
    keyed = [(k, tx, v) for k, (tx, v) in carried.items() if tx]
    if keyed:
        _insert_keys(wh, keyed)
    if refused:
        wh.insert("etl_quarantine", quarantine_rows(refusals_table(refused), QUARANTINE_SOURCE,
                                                    report.run_id, report.started_at))
        count_reasons(report.reject_reasons, (reason for _, _, reason, _ in refused))
        report.rejected += len(refused)


def _load_flats(wh: Warehouse, flats: Sequence[Flat], raw: dict[str, dict[str, Any]],
                report: MongoReport) -> list[tuple[str, int, str, str]]:
    """Flat documents through the batch's transform; returns the ones it refused (whose
    earlier facts it retracts)."""
    facts, rejects = transform.transform_transactions(documents_as_source(flats))
    bad = set(rejects.column("record_key").to_pylist())
    _load_members(wh, [f for f in flats if f.transaction_id not in bad])
    refused = []
    if rejects.num_rows:
        wh.insert("fact_sales", as_mongodb(transform.retractions(rejects)))
        refused = [(key, version, reason, _render(raw[key])) for key, version, reason in zip(
            rejects.column("record_key").to_pylist(), rejects.column("_version").to_pylist(),
            rejects.column("reason").to_pylist(), strict=True)]
    wh.insert("fact_sales", as_mongodb(facts))
    report.loaded += facts.num_rows
    report.sales += sum(1 for s in facts.column("status").to_pylist()
                        if s == transform.SALE_STATUS)
    return refused


def as_mongodb(table: pa.Table) -> pa.Table:
    """fact_sales rows (facts, retractions, tombstones) marked as MongoDB's."""
    return table.append_column("source", pa.array([QUARANTINE_SOURCE] * table.num_rows,
                                                  pa.string()))


def _insert_keys(wh: Warehouse, keyed: Sequence[tuple[str, str, int]]) -> None:
    doc_ids, tx_ids, versions = zip(*keyed, strict=True)
    wh.insert("mongo_keys", pa.table({"doc_id": pa.array(doc_ids, pa.string()),
                                      "transaction_id": pa.array(tx_ids, pa.string()),
                                      "_version": pa.array(versions, pa.uint64())}))


def previous_keys(wh: Warehouse, doc_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """doc_id -> (transaction_id, version) as last loaded (mongo_keys)."""
    out: dict[str, tuple[str, int]] = {}
    for piece in _slices(doc_ids):
        rows = wh.query(KEYS_SQL, text_set(piece))
        out.update((doc_id, (tx, int(v))) for doc_id, tx, v in rows)
    return out


def _slices(doc_ids: Sequence[str]) -> Iterator[list[str]]:
    """The ids in lists whose hex text stays under KEY_TEXT_BYTES (an _id may be a long text)."""
    piece: list[str] = []
    size = 0
    for doc_id in doc_ids:
        size += 2 * len(doc_id.encode("utf-8", "surrogateescape")) + 1
        if piece and size > KEY_TEXT_BYTES:
            yield piece
            piece, size = [], 2 * len(doc_id.encode("utf-8", "surrogateescape")) + 1
        piece.append(doc_id)
    if piece:
        yield piece


def _orphans(wh: Warehouse, carried: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Transactions that documents of this batch carried before and carry no more (their
    transaction_id changed, or a refusal took it away), with the version that removes them:
    above the last one loaded, at least the document's new version."""
    out: dict[str, int] = {}
    for doc_id, (tx, version) in previous_keys(wh, list(carried)).items():
        now_tx, now_version = carried[doc_id]
        if tx and tx != now_tx:
            out[tx] = max(out.get(tx, 0), version + 1, now_version)
    return out


def hand_over(wh: Warehouse, gone: dict[str, int], carriers: Carriers, report: MongoReport,
              latest: datetime) -> None:
    """Transactions a document no longer carries (deleted, or its transaction_id changed), at
    the version that removes them. The rule for a transaction id in several documents: the
    newest updated_at gives the fact; so a transaction another document still carries is
    loaded again from the newest such document, at this version (above what the departed one
    loaded); one that no document carries any more gets a tombstone."""
    newest: dict[str, dict[str, Any]] = {}
    for doc in carriers(sorted(gone)):
        tx = doc.get("transaction_id")
        if tx in gone and (tx not in newest or recency(doc) > recency(newest[tx])):
            newest[tx] = doc
    flats, raw = [], {}
    for tx, doc in newest.items():
        try:
            flat = flatten(doc, latest)
            if value_rules.amount_problem(flat.amount):
                continue  # refused: its own load retracted it; the tombstone below stands
        except BadDocument:
            continue
        flats.append(flat._replace(version=max(flat.version, gone[tx])))
        raw[tx] = doc
    stones = [tx for tx in sorted(gone) if tx not in raw]
    if stones:
        wh.insert("fact_sales", as_mongodb(star.tombstones(stones, [gone[t] for t in stones])))
        report.loaded += len(stones)
    if flats:
        _load_flats(wh, flats, raw, report)
        log.info("%d transactions handed over to the other documents that carry them",
                 len(flats))


def recency(doc: dict[str, Any]) -> tuple[int, str]:
    """Which of the documents carrying one transaction id is the newest (updated_at, then
    _id: a deterministic winner on a tie)."""
    updated = doc.get("updated_at")
    return (micros(updated) if isinstance(updated, datetime) else -1, doc_key(doc.get("_id")))


def _transaction_id(doc: dict[str, Any]) -> str | None:
    tx = doc.get("transaction_id")
    return tx if isinstance(tx, str) and KEY_PATTERN.fullmatch(tx) else None


def documents_as_source(flats: Sequence[Flat]) -> pa.Table:
    """Flat documents as the batch's extraction shape (transaction_time with its seconds)."""
    source = star.source_facts([(f.transaction_id, f.user_id, f.merchant_id, f.amount,
                                 f.status or "", 0, f.version) for f in flats])
    times = pa.array([f.transaction_time.astimezone(timezone.utc).replace(tzinfo=None)
                      for f in flats], pa.timestamp("us"))
    statuses = pa.array([f.status for f in flats], pa.string())  # None stays NULL: refused
    return (source.set_column(source.schema.get_field_index("transaction_time"),
                              "transaction_time", times)
            .set_column(source.schema.get_field_index("status"), "status", statuses))


def _load_members(wh: Warehouse, flats: Sequence[Flat]) -> None:
    """The users and merchants as the documents carry them, at the documents' versions (the
    newest version of a member wins, whichever source or document it came from). A document
    without the member's name says nothing about it: the member is only inferred (version 0),
    so an absent name never blanks one MySQL or another document gave."""
    for table, domain, pick in (
            ("dim_users", "user", lambda f: (f.user_id, f.user, f.version)),
            ("dim_merchants", "merchant", lambda f: (f.merchant_id, f.merchant, f.version))):
        members = [pick(f) for f in flats]
        named = [m for m in members if m[1][0]]
        if named:
            wh.insert(table, star.dimension_rows(f"{domain}s", named))
        unnamed = [m[0] for m in members if not m[1][0]]
        if unnamed:
            wh.insert(table, transform.inferred_members(
                np.array(unnamed, dtype=np.uint64), domain))


def _refusal(doc: dict[str, Any], reason: str, version: int) -> tuple[str, int, str, str]:
    """(key, version, reason, raw JSON) of a refused document, with what can still be read."""
    key = doc.get("transaction_id")
    key = key if isinstance(key, str) and key.isprintable() else f"_id:{doc.get('_id')}"
    return key[:200], version, reason, _render(doc)


def _render(doc: Any) -> str:
    text = json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # bad bytes visible
    return text if len(text) <= MAX_RAW_CHARS else text[:MAX_RAW_CHARS] + "...[cut]"


def audit(wh: Warehouse, pipeline: str, report: MongoReport) -> None:
    """The run's etl_runs row (the batch load's and the change stream's)."""
    window = report.window
    record_run(wh, RunRecord(
        run_id=report.run_id, pipeline=pipeline, mode=report.mode,
        started_at=report.started_at,
        window_from=window.low.isoformat() if window else "",
        window_to=window.high.isoformat() if window else "",
        rows_read=report.documents, rows_loaded=report.loaded, rows_rejected=report.rejected,
        status=report.status, error=report.error, seconds=report.seconds,
    ))
