"""The MongoDB source, I/O only: connect, the server's clock, and the documents of a window,
streamed in cursor batches (memory holds one batch, never the window).

Read options: dates as aware UTC datetimes (out of Python's range: `DatetimeMS`, which the
flattening refuses by name instead of the cursor failing), strings with `surrogateescape` (a
byte that is not UTF-8 is found and quarantined by `core.documents`, not fatal to the read),
Decimal128 kept as is (never a float).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import urlsplit

from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import ASCENDING, MongoClient
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

from ewallet_etl.config import Settings
from ewallet_etl.retry import TransientError
from ewallet_etl.sources.mysql import SourceError

CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=timezone.utc,
                     datetime_conversion=DatetimeConversion.DATETIME_AUTO,
                     unicode_decode_error_handler="surrogateescape")
TIMEOUT_MS = 5_000
AUTH_FAILED = 18


class MongoUnavailable(SourceError, TransientError):
    """The server could not be reached (retried with backoff)."""


class MongoSourceError(SourceError):
    """Wrong credentials, a collection that does not exist, a URI that does not parse: a
    configuration problem (exit 2), not retried."""

    exit_code = 2


def where(settings: Settings) -> str:
    """host:port/database.collection, without user or password."""
    parts = urlsplit(settings.mongodb_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{host}/{settings.mongodb_database}.{settings.mongodb_collection}"


def connect(settings: Settings) -> MongoClient:
    try:
        return MongoClient(settings.mongodb_url, serverSelectionTimeoutMS=TIMEOUT_MS,
                           connectTimeoutMS=TIMEOUT_MS, appname="ewallet-etl")
    except ConfigurationError as exc:  # a URI that does not parse: never echo it
        raise MongoSourceError("MONGODB_URL does not parse as a MongoDB URI "
                               f"({type(exc).__name__})") from None


def collection(client: MongoClient, settings: Settings) -> Any:
    """The source collection; MongoSourceError if it does not exist (a typo must not look like
    an empty source)."""
    db = client.get_database(settings.mongodb_database, codec_options=CODEC)
    try:
        names = db.list_collection_names()
    except PyMongoError as exc:
        raise error(settings, exc) from exc
    if settings.mongodb_collection not in names:
        raise MongoSourceError(f"MongoDB at {where(settings)}: the collection does not exist "
                               f"(collections: {', '.join(sorted(names)[:10]) or 'none'})")
    return db.get_collection(settings.mongodb_collection)


def server_now(client: MongoClient, settings: Settings) -> datetime:
    """The server's clock ("now" from the source, not from this host)."""
    try:
        local = client.admin.command("hello").get("localTime")
    except PyMongoError as exc:
        raise error(settings, exc) from exc
    if not isinstance(local, datetime):
        raise MongoSourceError(f"MongoDB at {where(settings)} does not say its time (hello)")
    return local.replace(tzinfo=timezone.utc) if local.tzinfo is None else local


def documents(coll: Any, low: datetime, high: datetime, batch: int, settings: Settings,
              full: bool = False, beyond: datetime | None = None
              ) -> Iterator[list[dict[str, Any]]]:
    """The documents with low <= updated_at < high in (updated_at, _id) order, in lists of at
    most `batch`, each list one cursor batch; then the documents no window can load, so that
    they are quarantined, not silently skipped: updated_at at or after `beyond` (the future:
    one index range above the server's clock), and, on a full load (`full`), updated_at
    missing or not a date (no window sees them at all; an index scan of every document would
    be the price of looking for them on every run)."""
    window: dict[str, Any] = {"updated_at": {"$gte": low, "$lt": high}}
    unreadable: list[dict[str, Any]] = []
    if beyond is not None:
        unreadable.append({"updated_at": {"$gte": max(beyond, high)}})
    if full:
        unreadable.append({"updated_at": {"$not": {"$type": "date"}}})
    try:
        yield from _batches(coll.find(window).sort([("updated_at", ASCENDING),
                                                    ("_id", ASCENDING)]), batch)
        if unreadable:
            yield from _batches(coll.find({"$or": unreadable}), batch)
    except PyMongoError as exc:
        raise error(settings, exc) from exc


def carrying(coll: Any, transaction_ids: list[str], settings: Settings) -> list[dict[str, Any]]:
    """The documents that carry these transaction ids now (at most a few: ids are unique in a
    sound collection)."""
    try:
        return list(coll.find({"transaction_id": {"$in": transaction_ids}}))
    except PyMongoError as exc:
        raise error(settings, exc) from exc


def _batches(cursor: Any, batch: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for doc in cursor.batch_size(batch):
        chunk.append(doc)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def error(settings: Settings, exc: BaseException) -> SourceError:
    """A PyMongo error as one line naming the server, without the URI's secret."""
    if isinstance(exc, OperationFailure):
        reason = ("authentication failed: check the user and password in MONGODB_URL"
                  if exc.code == AUTH_FAILED else f"({exc.code}) {exc.details.get('errmsg', '')}"
                  if exc.details else f"({exc.code})")
        return MongoSourceError(f"MongoDB at {where(settings)}: {reason}")
    name = type(exc).__name__
    return MongoUnavailable(f"MongoDB at {where(settings)} unreachable ({name})")
