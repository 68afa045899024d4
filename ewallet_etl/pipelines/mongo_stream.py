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
  tombstone above the last version loaded (and not below the delete's own wall time), unless
  another document still carries that transaction id: the newest of them gives it again
  (`mongo.hand_over`).
* A micro-batch is reduced to the last event per `_id` first, so the events of one document
  apply in their order: a delete and a re-insert in one batch leave the document present.

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

from pymongo.errors import OperationFailure, PyMongoError

from ewallet_etl.config import Settings
from ewallet_etl.core.documents import FUTURE_TOLERANCE, doc_key
from ewallet_etl.core.instants import EPOCH, micros
from ewallet_etl.pipelines.mongo import (
    Carriers,
    MongoReport,
    audited_run,
    carriers_of,
    hand_over,
    load_documents,
    previous_keys,
)
from ewallet_etl.pipelines.stopping import streaming
from ewallet_etl.sources import mongodb as source_mongo
from ewallet_etl.state import store
from ewallet_etl.warehouse import Warehouse

log = logging.getLogger(__name__)

KIND = "mongodb_stream"
TOKEN_SQL = """
SELECT argMax(cursor, _version), max(_version) FROM analytics_dw.etl_state
WHERE pipeline = {pipeline:String} AND kind = 'mongodb_stream'
GROUP BY pipeline
"""
# The server's change history no longer holds the token (or never did): only a new copy helps.
# 286 ChangeStreamHistoryLost, 280 ChangeStreamFatalError (a resume point no longer in the
# oplog, on some versions), 260 InvalidResumeToken, 9 FailedToParse (a token it cannot read).
LOST_HISTORY = {9, 260, 280, 286}


class TokenLost(source_mongo.MongoSourceError):
    """The saved resume token cannot be resumed from (exit 2, like a purged binlog)."""


def token_lost(settings: Settings, exc: BaseException) -> TokenLost | None:
    """The error to stop with when `exc` says the change history is gone (at the start or
    while following: the server trims its history under a slow stream too), else None."""
    if not isinstance(exc, OperationFailure) or exc.code not in LOST_HISTORY:
        return None
    return TokenLost(f"MongoDB at {source_mongo.where(settings)}: the resume token is no longer "
                     f"in the server's change history ({exc.code}): run with --resnapshot to "
                     "copy the collection again")


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
        try:
            _stream(settings, client, coll, wh, report, pipeline, saved, follow, stop)
        except PyMongoError as exc:
            lost = token_lost(settings, exc)
            if lost is None:
                raise
            raise lost from None
    return report


def _stream(settings: Settings, client: Any, coll: Any, wh: Warehouse, report: MongoReport,
            pipeline: str, saved: dict[str, Any] | None, follow: bool,
            stop: threading.Event) -> None:
    version = 0
    stream = coll.watch(full_document="updateLookup", resume_after=saved,
                        max_await_time_ms=min(settings.cdc_batch_ms, 1000))
    # the server's clock, followed by this host's (the future of a document's updated_at)
    skew = source_mongo.server_now(client, settings) - datetime.now(timezone.utc)
    clock = Clock(skew, carriers_of(coll, settings))
    with stream:
        if saved is None:  # the copy, with the stream already open: nothing falls between
            token = stream.resume_token
            report.mode = "snapshot+" + report.mode
            now = clock.now()
            for docs in source_mongo.documents(coll, EPOCH, now + FUTURE_TOLERANCE,
                                               settings.chunk_rows, settings, full=True,
                                               beyond=now + FUTURE_TOLERANCE):
                load_documents(wh, docs, report, now, clock.carriers)
            version = store.save(wh, pipeline, KIND, {"resume_token": token},
                                 source_mongo.where(settings), report.run_id)
        _consume(settings, wh, stream, report, pipeline, version, follow, stop, clock)


class Clock:
    """The server's clock as this host follows it, and the source's carriers lookup."""

    def __init__(self, skew: timedelta, carriers: Carriers) -> None:
        self.skew, self.carriers = skew, carriers

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.skew


def _consume(settings: Settings, wh: Warehouse, stream: Any, report: MongoReport,
             pipeline: str, version: int, follow: bool, stop: threading.Event,
             clock: Clock) -> None:
    """Micro-batches until caught up (bounded) or until `stop` (follow)."""
    streaming(stop)  # from here a first signal lets the micro-batch in flight finish
    pending: list[dict[str, Any]] = []
    started = time.monotonic()
    while not stop.is_set():
        event = stream.try_next()
        if event is not None:
            pending.append(event)
        age_ms = (time.monotonic() - started) * 1000
        if pending and (len(pending) >= settings.cdc_batch_events
                        or age_ms >= settings.cdc_batch_ms or event is None):
            _apply(wh, pending, report, clock)
            version = store.save(wh, pipeline, KIND, {"resume_token": stream.resume_token},
                                 source_mongo.where(settings), report.run_id, version)
            log.info("batch: events=%d applied, resume token saved", len(pending))
            pending, started = [], time.monotonic()
        if event is None and not follow:
            return  # caught up with the server's change history


def _apply(wh: Warehouse, events: list[dict[str, Any]], report: MongoReport,
           clock: Clock) -> None:
    """One micro-batch: the last event of each document, in the order they came."""
    last = last_per_document(events)
    docs = [e["fullDocument"] for e in last
            if e.get("operationType") in ("insert", "replace", "update") and e.get("fullDocument")]
    now = clock.now()
    if docs:
        load_documents(wh, docs, report, now, clock.carriers)
    deletes = {doc_key(e["documentKey"]["_id"]): e for e in last
               if e.get("operationType") == "delete"}
    gone: dict[str, int] = {}
    for doc_id, (tx, v) in previous_keys(wh, list(deletes)).items():
        if tx:
            gone[tx] = max(gone.get(tx, 0), v + 1, _wall_us(deletes[doc_id]))
    if gone:
        hand_over(wh, gone, clock.carriers, report, now + FUTURE_TOLERANCE)
    report.documents += len(events) - len(docs)  # load_documents counted its own


def last_per_document(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last event of each document (`documentKey._id`), in stream order: a document's
    events then apply in their order (a delete and a re-insert in one batch: the insert)."""
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        key = event.get("documentKey", {}).get("_id")
        if key is None:
            continue  # drop, invalidate: no document (the stream ends on an invalidate)
        last.pop(doc_key(key), None)  # re-inserted at the end: the order of last changes
        last[doc_key(key)] = event
    return list(last.values())


def _wall_us(event: dict[str, Any]) -> int:
    wall = event.get("wallTime")
    return micros(wall) if isinstance(wall, datetime) else 0


def _saved_token(wh: Warehouse, pipeline: str) -> dict[str, Any] | None:
    rows = wh.query(TOKEN_SQL, {"pipeline": pipeline})
    if not rows:
        return None
    cursor = json.loads(rows[0][0])
    return cursor.get("resume_token") or None
