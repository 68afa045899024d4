"""MongoDB change stream into the star schema (`cdc-stream.py --source mongodb [--follow]`).

The first run (or `--resnapshot`) opens the change stream *before* it copies the collection,
keeps the stream's resume token, loads every document (the batch's `load_documents`: the same
rules, quarantine and versions), saves the token, then applies the changes. What changed during
the copy is applied again, idempotently (the same `updated_at`, the same version). Later runs
resume from the saved token.

Changes are applied in micro-batches (CDC_BATCH_EVENTS events or CDC_BATCH_MS milliseconds):

* insert, replace, and update (with `fullDocument: updateLookup`): the document as it is now,
  through `load_documents`. An update whose document is already gone carries none and is
  skipped: its delete follows in the stream.
* delete: the event names only `_id`; `mongo_keys` maps it to its transaction, which gets a
  tombstone above the last version loaded (and not below the delete's own wall time).

The token is saved in `etl_state` (pipeline `mongodb-stream:<db>.<collection>`, kind
`mongodb_stream`) after the micro-batch it covers landed, so a killed stream resumes without
loss and re-applies at most one batch, idempotently. A token the server no longer has (its
change history is shorter than the outage) is refused with exit 2: `--resnapshot` copies the
collection again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo.errors import OperationFailure

from ewallet_etl.config import Settings
from ewallet_etl.core import star
from ewallet_etl.core.documents import doc_key
from ewallet_etl.core.instants import EPOCH, micros
from ewallet_etl.pipelines.mongo import MongoReport, audited_run, load_documents
from ewallet_etl.sources import mongodb as source_mongo
from ewallet_etl.state import store
from ewallet_etl.warehouse import IN_TEXT_SET, Warehouse, text_set

log = logging.getLogger(__name__)

KIND = "mongodb_stream"
TOKEN_SQL = """
SELECT argMax(cursor, _version), max(_version) FROM analytics_dw.etl_state
WHERE pipeline = {pipeline:String} AND kind = 'mongodb_stream'
GROUP BY pipeline
"""
KEYS_SQL = f"""
SELECT doc_id, argMax(transaction_id, _version), max(_version) FROM analytics_dw.mongo_keys
WHERE {IN_TEXT_SET.format(column="doc_id")} GROUP BY doc_id
"""
# The server's change history no longer holds the token (or never did): only a new copy helps.
LOST_HISTORY = {9, 260, 280, 286}


class TokenLost(source_mongo.MongoSourceError):
    """The saved resume token cannot be resumed from (exit 2, like a purged binlog)."""


def pipeline_name(settings: Settings) -> str:
    return f"mongodb-stream:{settings.mongodb_database}.{settings.mongodb_collection}"


def run_mongo_stream(settings: Settings, follow: bool = False, resnapshot: bool = False,
                     stop: threading.Event | None = None) -> MongoReport:
    stop = stop or threading.Event()
    report = MongoReport(uuid.uuid4().hex[:12], "follow" if follow else "bounded",
                         datetime.now(timezone.utc))
    pipeline = pipeline_name(settings)
    with audited_run(settings, report, pipeline) as (wh, client):
        coll = source_mongo.collection(client, settings)
        saved = None if resnapshot else _saved_token(wh, pipeline)
        version = 0
        try:
            stream = coll.watch(full_document="updateLookup", resume_after=saved,
                                max_await_time_ms=min(settings.cdc_batch_ms, 1000))
        except OperationFailure as exc:
            if exc.code in LOST_HISTORY:
                raise TokenLost(f"MongoDB at {source_mongo.where(settings)}: the saved resume "
                                f"token is no longer in the server's change history ({exc.code}"
                                f"): run with --resnapshot to copy the collection again") from None
            raise
        with stream:
            if saved is None:  # the copy, with the stream already open: nothing falls between
                token = stream.resume_token
                report.mode = "snapshot+" + report.mode
                far = datetime.now(timezone.utc) + timedelta(days=36_500)
                for docs in source_mongo.documents(coll, EPOCH, far, settings.chunk_rows,
                                                   settings, full=True):
                    load_documents(wh, docs, report)
                version = store.save(wh, pipeline, KIND, {"resume_token": token},
                                     source_mongo.where(settings), report.run_id)
            _consume(settings, wh, stream, report, pipeline, version, follow, stop)
    return report


def _consume(settings: Settings, wh: Warehouse, stream: Any, report: MongoReport,
             pipeline: str, version: int, follow: bool, stop: threading.Event) -> None:
    """Micro-batches until caught up (bounded) or until `stop` (follow)."""
    pending: list[dict[str, Any]] = []
    started = time.monotonic()
    while not stop.is_set():
        event = stream.try_next()
        if event is not None:
            pending.append(event)
        age_ms = (time.monotonic() - started) * 1000
        if pending and (len(pending) >= settings.cdc_batch_events
                        or age_ms >= settings.cdc_batch_ms or event is None):
            _apply(wh, pending, report)
            version = store.save(wh, pipeline, KIND, {"resume_token": stream.resume_token},
                                 source_mongo.where(settings), report.run_id, version)
            log.info("batch: events=%d applied, resume token saved", len(pending))
            pending, started = [], time.monotonic()
        if event is None and not follow:
            return  # caught up with the server's change history


def _apply(wh: Warehouse, events: list[dict[str, Any]], report: MongoReport) -> None:
    docs = [e["fullDocument"] for e in events
            if e.get("operationType") in ("insert", "replace", "update") and e.get("fullDocument")]
    if docs:
        load_documents(wh, docs, report)
    deletes = {doc_key(e["documentKey"]["_id"]): e for e in events
               if e.get("operationType") == "delete"}
    if deletes:
        known = wh.query(KEYS_SQL, text_set(deletes))
        if known:
            keys = [tx for _, tx, _ in known]
            versions = [max(int(v) + 1, _wall_us(deletes[doc_id])) for doc_id, _, v in known]
            wh.insert("fact_sales", star.tombstones(keys, versions))
            report.loaded += len(keys)
    report.documents += len(events) - len(docs)  # load_documents counted its own


def _wall_us(event: dict[str, Any]) -> int:
    wall = event.get("wallTime")
    return micros(wall) if isinstance(wall, datetime) else 0


def _saved_token(wh: Warehouse, pipeline: str) -> dict[str, Any] | None:
    rows = wh.query(TOKEN_SQL, {"pipeline": pipeline})
    if not rows:
        return None
    cursor = json.loads(rows[0][0])
    return cursor.get("resume_token") or None
