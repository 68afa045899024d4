"""A demo collection of wallet documents for the MongoDB source, and a generator for benchmarks.

    .venv/bin/python seed/mongodb_seed.py [--reset]  # the demo documents into MONGODB_URL
    .venv/bin/python seed/mongodb_seed.py --generate 100000   # N generated documents

Idempotent (the compose seed service runs it on every `up`): every document has a stable _id
(its own, or one derived from its transaction id) and is inserted only when that _id is absent;
documents already there are left as they are, even when a demo changed them.

The demo documents mirror the MySQL seed's people and shops (the same natural ids: the same
surrogate keys in the star schema) with transactions of their own, ids MG...; the mess a
document store holds is there too: a Decimal128, a text and an integer amount, an ISO-string
date, a string _id, extra fields (items, device).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo import MongoClient
from pymongo.errors import BulkWriteError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ewallet_etl.config import Settings  # noqa: E402

USERS = {1: ("Andi Pratama", "andi@example.com", "Jakarta"),
         2: ("Budi Santoso", "budi@example.com", "Bandung"),
         3: ("Citra Lestari", "citra@example.com", "Surabaya")}
MERCHANTS = {1: ("Kopi Kenangan", "Food & Beverage", "Jakarta"),
             2: ("Tokopedia", "E-commerce", "Jakarta"),
             3: ("Grab Transport", "Transport", "Jakarta")}
STATUSES = ("SUCCESS", "FAILED", "PENDING", "REFUNDED")
DUPLICATE_KEY = 11000
log = logging.getLogger("mongodb_seed")


def user(uid: int) -> dict[str, Any]:
    name, email, city = USERS[uid]
    return {"id": uid, "name": name, "email": email, "city": city}


def merchant(mid: int) -> dict[str, Any]:
    name, category, city = MERCHANTS[mid]
    return {"id": mid, "name": name, "category": category, "city": city}


def demo_documents(now: datetime) -> list[dict[str, Any]]:
    return [
        {"transaction_id": "MG2001", "user": user(1), "merchant": merchant(2),
         "amount": Decimal128("125000.00"), "currency": "IDR", "status": "SUCCESS",
         "transaction_time": datetime(2025, 1, 10, 14, 0, tzinfo=timezone.utc),
         "updated_at": now, "items": [{"sku": "BK-1", "qty": 1, "price": Decimal128("125000.00")}],
         "device": {"os": "android", "app": "4.2.0"}},
        {"_id": "mg-2002", "transaction_id": "MG2002", "user": user(3), "merchant": merchant(1),
         "amount": "45000.50", "status": "SUCCESS", "transaction_time": "2025-01-12T07:30:00Z",
         "updated_at": now},
        {"transaction_id": "MG2003", "user": user(2), "merchant": merchant(3),
         "amount": 30000, "currency": "IDR", "status": "FAILED",
         "transaction_time": datetime(2025, 1, 11, 9, 0, tzinfo=timezone.utc),
         "updated_at": now, "device": {"os": "ios"}},
    ]


def generated(n: int, now: datetime, seed: int = 7) -> Iterator[dict[str, Any]]:
    """N documents spread over 60 days of 2025, users and merchants 1-3, all four statuses."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        cents = rng.randint(100, 50_000_000)
        yield {"transaction_id": f"MGEN{i:09d}", "user": user(rng.randint(1, 3)),
               "merchant": merchant(rng.randint(1, 3)),
               "amount": Decimal128(str(Decimal(cents).scaleb(-2))), "currency": "IDR",
               "status": rng.choice(STATUSES),
               "transaction_time": start + timedelta(seconds=rng.randint(0, 60 * 86_400)),
               "updated_at": now - timedelta(microseconds=n - i),
               "items": [{"sku": f"SKU{rng.randint(1, 99)}", "qty": 1}]}


def stable_id(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with an _id: its own, else an ObjectId derived from its transaction id (the
    same on every run, so a second run finds it)."""
    if "_id" in doc:
        return doc
    digest = hashlib.sha256(str(doc["transaction_id"]).encode()).hexdigest()[:24]
    return {"_id": ObjectId(digest), **doc}


def insert_absent(coll: Any, docs: list[dict[str, Any]]) -> int:
    """Insert the documents whose _id is not there yet; returns how many were new."""
    try:
        return len(coll.insert_many(docs, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return int(exc.details.get("nInserted", 0))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generate", type=int, metavar="N", help="N generated documents")
    parser.add_argument("--reset", action="store_true",
                        help="drop the collection first (the demo starts from the same documents)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    client: MongoClient = MongoClient(settings.mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        coll = client[settings.mongodb_database][settings.mongodb_collection]
        if args.reset:
            coll.drop()
        now = client.admin.command("hello")["localTime"]
        docs = list(generated(args.generate, now)) if args.generate else demo_documents(now)
        new = sum(insert_absent(coll, [stable_id(d) for d in docs[start:start + 5_000]])
                  for start in range(0, len(docs), 5_000))
        coll.create_index([("updated_at", 1), ("_id", 1)])
    finally:
        client.close()
    log.info("%d documents new, %d already there, in %s.%s", new, len(docs) - new,
             settings.mongodb_database, settings.mongodb_collection)
    return 0


if __name__ == "__main__":
    sys.exit(main())
