"""Reconciliation of the MongoDB source: its documents against the `fact_sales` rows they made,
per day of transaction_time, to the cent (`etl_pipeline.py --source mongodb --reconcile`).

The source side streams the collection in cursor batches and applies the load's own rules
(`flatten`, the value rules, the batch's transform), so a refused document is expected to be
absent, not counted as missing. The warehouse side reads the current facts whose source is
`mongodb`. A transaction id carried by several documents counts once, from the newest of them
(the load's rule, `mongo.hand_over`): the duplicated ids are found first by one aggregation,
and only their documents are held until the scan ends. A transaction id that MySQL changed
later (its fact now says `mysql`: one transaction, the newest change wins) is explained, not a
difference. Memory holds the per-day totals and, for the days that differ, their ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow.compute as pc

from ewallet_etl.config import Settings
from ewallet_etl.core import transform, value_rules
from ewallet_etl.core.documents import FUTURE_TOLERANCE, BadDocument, flatten
from ewallet_etl.core.instants import EPOCH
from ewallet_etl.pipelines.mongo import documents_as_source, recency
from ewallet_etl.sources import mongodb as source_mongo
from ewallet_etl.warehouse import open_warehouse

log = logging.getLogger(__name__)

DAYS_SQL = """
SELECT toString(transaction_date), count(), countIf(status = 'SUCCESS'),
       toString(sumIf(amount, status = 'SUCCESS'))
FROM (SELECT * FROM analytics_dw.fact_sales FINAL)
WHERE _deleted = 0 AND source = 'mongodb'
GROUP BY transaction_date
"""
DAY_IDS_SQL = """
SELECT transaction_id, source FROM (SELECT * FROM analytics_dw.fact_sales FINAL)
WHERE _deleted = 0 AND transaction_date = {day:Date}
"""
SHOW_IDS = 10


@dataclass
class MongoReconciliation:
    days: int = 0
    documents: int = 0
    refused: int = 0
    diffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    explained: int = 0  # newer in MySQL

    @property
    def ok(self) -> bool:
        return not self.diffs


def reconcile_mongo(settings: Settings) -> MongoReconciliation:
    result = MongoReconciliation()
    source = _source_days(settings, result)
    wh = open_warehouse(settings)
    try:
        warehouse = {day: (int(n), int(sales), Decimal(total))
                     for day, n, sales, total in wh.query(DAYS_SQL)}
        for day in sorted(set(source) | set(warehouse)):
            mine = source.get(day, (0, 0, Decimal(0), set()))
            theirs = warehouse.get(day, (0, 0, Decimal(0)))
            if mine[:3] == theirs:
                continue
            rows = wh.query(DAY_IDS_SQL, {"day": date.fromisoformat(day)})
            ours = {tx for tx, src in rows if src == "mongodb"}
            newer_in_mysql = {tx for tx, src in rows if src == "mysql"} & mine[3]
            result.explained += len(newer_in_mysql)
            missing = sorted(mine[3] - ours - newer_in_mysql)
            extra = sorted(ours - mine[3])
            if missing or extra or not newer_in_mysql:
                result.diffs[day] = {"source": mine[:3], "warehouse": theirs,
                                     "missing": missing[:SHOW_IDS], "extra": extra[:SHOW_IDS]}
        result.days = len(set(source) | set(warehouse))
    finally:
        wh.close()
    for day, diff in result.diffs.items():
        log.error("mongodb %s: source %s, warehouse %s; missing %s, extra %s", day,
                  diff["source"], diff["warehouse"], diff["missing"], diff["extra"])
    log.info("mongodb reconcile: %d days, %d documents (%d refused by the rules), %d facts "
             "newer in MySQL, %s", result.days, result.documents, result.refused,
             result.explained, "equal" if result.ok else f"{len(result.diffs)} days differ")
    return result


def _source_days(settings: Settings, result: MongoReconciliation
                 ) -> dict[str, tuple[int, int, Decimal, set[str]]]:
    client = source_mongo.connect(settings)
    days: dict[str, tuple[int, int, Decimal, set[str]]] = {}
    try:
        coll = source_mongo.collection(client, settings)
        latest = source_mongo.server_now(client, settings) + FUTURE_TOLERANCE
        shared = _duplicated_ids(coll)
        newest: dict[str, dict[str, Any]] = {}  # the documents of duplicated ids: the newest
        for docs in source_mongo.documents(coll, EPOCH, latest, settings.chunk_rows, settings,
                                           full=True, beyond=latest):
            result.documents += len(docs)
            single = []
            for doc in docs:
                tx = doc.get("transaction_id")
                if isinstance(tx, str) and tx in shared:
                    if tx not in newest or recency(doc) > recency(newest[tx]):
                        newest[tx] = doc
                else:
                    single.append(doc)
            _count(single, latest, days, result)
        _count(list(newest.values()), latest, days, result)
    finally:
        client.close()
    return days


def _duplicated_ids(coll: Any) -> set[str]:
    rows = coll.aggregate([{"$group": {"_id": "$transaction_id", "n": {"$sum": 1}}},
                           {"$match": {"n": {"$gt": 1}}}])
    return {row["_id"] for row in rows if isinstance(row["_id"], str)}


def _count(docs: list[dict[str, Any]], latest: datetime,
           days: dict[str, tuple[int, int, Decimal, set[str]]],
           result: MongoReconciliation) -> None:
    """The load's rules on these documents; what they load, added to the per-day totals."""
    flats = []
    for doc in docs:
        try:
            flat = flatten(doc, latest)
            if value_rules.amount_problem(flat.amount):
                raise BadDocument("amount")
            flats.append(flat)
        except BadDocument:
            result.refused += 1
    if not flats:
        return
    facts, rejects = transform.transform_transactions(documents_as_source(flats))
    result.refused += rejects.num_rows
    ids = facts.column("transaction_id").to_pylist()
    dates = pc.cast(facts.column("transaction_date"), "string").to_pylist()
    statuses = facts.column("status").to_pylist()
    for tx, day, status, amount in zip(ids, dates, statuses,
                                       facts.column("amount").to_pylist(), strict=True):
        n, sales, total, members = days.get(day, (0, 0, Decimal(0), set()))
        sale = status == transform.SALE_STATUS
        members.add(tx)
        days[day] = (n + 1, sales + sale, total + (amount if sale else 0), members)
