"""Money reconciliation: source transactions vs the warehouse's fact_sales, per day, to the cent.

`python etl_pipeline.py --reconcile` (exit 0 equal, 4 different). For every day (the UTC date of
`transaction_time`, the warehouse's `transaction_date`) both sides compute, in the database:

* the number of transactions, the number of sales (status SUCCESS) and their sum(amount),
  exact decimals;
* a fingerprint: the sum, modulo 2**64, of the first 8 bytes of MD5("id|status|amount in
  cents") over the day's rows (`halfMD5` in ClickHouse, `CONV(LEFT(MD5(..), 16), 16, 10)` in
  MySQL: the same number). Equal counts and sums can hide a wrong status or two compensating
  errors; equal fingerprints cannot, short of a 2**-64 accident.

Days whose four numbers agree are equal. Only days that differ are read row by row (one day at
a time, so memory is bounded by a day's transactions), and their differences are listed by id:
missing from the warehouse, only in the warehouse (a hard delete in the source, a transaction
whose day changed, a planted row), or present on both sides with another status or amount.

The warehouse side reads `v_fact_sales` (FINAL, deleted rows hidden), so versions not merged
yet never count twice.

Quarantined rows. A source row the pipeline refused (amount NULL, unknown status, ...) is absent
from the warehouse on purpose, or, if an earlier good version was loaded, is there with that
older value. When etl_quarantine holds the row's id at its current source version, such a
difference is reported as "quarantined" (counted, listed at INFO) and is not a mismatch: the
refusal is recorded where it belongs. A quarantined row that has since been fixed in the source
is compared normally, so it must have been loaded again.

Hard deletes. `sweep_deletes` (run by `--full-refresh`) writes a tombstone (`_deleted = 1`, a
version above the row's and at least the source's clock) for every fact the comparison finds
only in the warehouse: a transaction deleted in the source, or the old-day row of one whose
transaction_time moved to another day. Deleted users and merchants are not swept (facts keep
resolving to them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator

import pyarrow as pa
import pymysql

from ewallet_etl.config import Settings
from ewallet_etl.core import transform
from ewallet_etl.core.instants import micros
from ewallet_etl.core.transform import UTC_SECONDS, WAREHOUSE_AMOUNT
from ewallet_etl.retry import with_retries
from ewallet_etl.sources import mysql as source_mysql
from ewallet_etl.warehouse import IN_TEXT_SET, Warehouse, open_warehouse, text_set

log = logging.getLogger(__name__)

HASH_MODULUS = 2**64
SHOW_IDS = 20  # ids listed per kind and day in the log

# A transaction_time that is no date ('0000-00-00') has no day: it joins the NULL "day".
SOURCE_DAYS_SQL = f"""
SELECT IF({source_mysql.VALID_TIME}, DATE(t.transaction_time), NULL) AS day,
       COUNT(*),
       COALESCE(SUM(t.status = 'SUCCESS'), 0),
       COALESCE(SUM(IF(t.status = 'SUCCESS', t.amount, 0)), 0),
       COALESCE(SUM(CAST(CONV(LEFT(MD5(CONCAT_WS('|', t.transaction_id, t.status,
                                                 CAST(t.amount * 100 AS SIGNED))), 16), 16, 10)
                         AS UNSIGNED)), 0)
FROM transactions AS t
GROUP BY day
"""

# The facts of the MySQL source: fact_sales also holds MongoDB's (column source), which MySQL
# must neither count nor sweep. The _deleted filter sits outside FINAL (see DAY_FACTS_SQL).
MYSQL_FACTS = ("(SELECT * FROM (SELECT * FROM analytics_dw.fact_sales FINAL) "
               "WHERE _deleted = 0 AND source = 'mysql')")
WAREHOUSE_DAYS_SQL = """
SELECT transaction_date, count(), countIf(status = 'SUCCESS'), sumIf(amount, status = 'SUCCESS'),
       sum(halfMD5(concat(transaction_id, '|', status, '|',
                          toString(toInt64(toDecimal128(amount, 2) * 100)))))
FROM analytics_dw.v_fact_sales
GROUP BY transaction_date
"""

# The rows of one day, as the batch extraction reads them: a half-open range on the indexed
# column (an impossible date such as '2025-02-30' sorts inside a range, hence VALID_TIME);
# NULL and impossible times form their own "day".
SOURCE_DAY_ROWS_SQL = source_mysql.TRANSACTIONS_COLUMNS + f"""\
WHERE t.transaction_time >= %s AND t.transaction_time < %s AND {source_mysql.VALID_TIME}
"""
SOURCE_NULL_DAY_ROWS_SQL = source_mysql.TRANSACTIONS_COLUMNS + f"""\
WHERE t.transaction_time IS NULL OR NOT {source_mysql.VALID_TIME}
"""
SOURCE_ROW_TYPES = {
    "transaction_id": pa.string(), "user_id": pa.uint64(), "merchant_id": pa.uint64(),
    "status": pa.string(), "updated_at": pa.timestamp("us"),
}
WAREHOUSE_DAY_ROWS_SQL = """
SELECT transaction_id, status, amount FROM analytics_dw.v_fact_sales
WHERE transaction_date = {day:Date}
"""
# Which of these ids the warehouse holds from another source than MySQL, on any day.
OTHER_SOURCE_SQL = f"""
SELECT transaction_id FROM (SELECT * FROM analytics_dw.fact_sales FINAL)
WHERE _deleted = 0 AND source != 'mysql' AND {IN_TEXT_SET.format(column="transaction_id")}
"""
QUARANTINED_SQL = """
SELECT DISTINCT record_key, _version FROM analytics_dw.etl_quarantine
WHERE source = 'transactions'
"""

# The current, not deleted versions of one day's facts, with their version (v_fact_sales has
# none). The _deleted filter sits outside FINAL: on 18.16 a WHERE beside FINAL may run first.
DAY_FACTS_SQL = """
SELECT transaction_id, user_key, merchant_key, amount, amount_category, status,
       transaction_time, transaction_date, updated_at, _version
FROM (SELECT * FROM analytics_dw.fact_sales FINAL)
WHERE _deleted = 0 AND source = 'mysql' AND transaction_date = {day:Date}
"""
# The live MySQL facts a load did not rewrite (another stamp): the only ones that can be gone.
UNSEEN_DAYS_SQL = """
SELECT DISTINCT transaction_date FROM (SELECT * FROM analytics_dw.fact_sales FINAL)
WHERE _deleted = 0 AND source = 'mysql' AND _loaded_us != {stamp:UInt64}
"""
UNSEEN_DAY_FACTS_SQL = DAY_FACTS_SQL.rstrip() + " AND _loaded_us != {stamp:UInt64}\n"
LOOKUP_IDS = 1000  # ids per source lookup
FACT_COLUMNS = (
    ("transaction_id", pa.string()), ("user_key", pa.uint64()), ("merchant_key", pa.uint64()),
    ("amount", WAREHOUSE_AMOUNT), ("amount_category", pa.string()), ("status", pa.string()),
    ("transaction_time", UTC_SECONDS), ("transaction_date", pa.date32()),
    ("updated_at", UTC_SECONDS), ("_version", pa.uint64()),
)



@dataclass(frozen=True)
class DayTotals:
    rows: int
    sales: int
    sales_amount: Decimal
    fingerprint: int


@dataclass
class DayDiff:
    day: date | None
    source: DayTotals | None
    warehouse: DayTotals | None
    missing: list[str] = field(default_factory=list)  # in the source only
    extra: list[str] = field(default_factory=list)  # in the warehouse only
    changed: list[str] = field(default_factory=list)  # other status or amount
    stale: list[str] = field(default_factory=list)  # refused in the source, older one counted
    quarantined: list[str] = field(default_factory=list)  # explained by etl_quarantine
    # explained too: the transaction's newest change came from another source (MongoDB), whose
    # fact now stands for it (one transaction, the newest change wins; docs/mongodb.md)
    other_source: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # Totals that differ with no row to show for it would be a bug here: never "ok".
        return (not (self.missing or self.extra or self.changed or self.stale)
                and bool(self.quarantined or self.other_source))


@dataclass
class Reconciliation:
    days: int = 0
    rows: int = 0
    diffs: list[DayDiff] = field(default_factory=list)

    @property
    def mismatches(self) -> list[DayDiff]:
        return [d for d in self.diffs if not d.ok]

    @property
    def quarantined(self) -> list[str]:
        return [tx for d in self.diffs for tx in d.quarantined]

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True)
class Target:
    """A warehouse table that should equal the source's transactions."""
    name: str
    days_sql: str  # per day: rows, sales, sales amount, fingerprint
    day_rows_sql: str  # one day's (transaction_id, status, amount)
    # (record_key, _version) of refused rows; None: the refusal rules alone explain an absence
    quarantined_sql: str | None


FACTS = Target("fact_sales", WAREHOUSE_DAYS_SQL.replace("analytics_dw.v_fact_sales", MYSQL_FACTS),
               WAREHOUSE_DAY_ROWS_SQL.replace("analytics_dw.v_fact_sales", MYSQL_FACTS),
               QUARANTINED_SQL)

# The CDC replica (cdc-stream.py), fed from change events or the binlog: its versions are
# event versions, not the source's updated_at, so quarantine rows cannot be matched to a
# source version; a row the batch rules refuse is explained when the replica lacks it.
REPLICA = Target(
    "cdc_transactions",
    WAREHOUSE_DAYS_SQL.replace("transaction_date", "toDate(transaction_time)")
    .replace("v_fact_sales", "v_cdc_transactions"),
    "SELECT transaction_id, status, amount FROM analytics_dw.v_cdc_transactions "
    "WHERE toDate(transaction_time) = {day:Date}",
    None,
)
TARGETS = {target.name: target for target in (FACTS, REPLICA)}


def reconcile(settings: Settings, target: Target = FACTS) -> bool:
    """Compare source and `target`; log every differing day; True when they agree."""
    result = compare(settings, target)
    for diff in result.diffs:
        (log.info if diff.ok else log.warning)("%s", describe(diff))
    summary = (f"reconcile {target.name}: {result.days} days, {result.rows} source transactions, "
               f"{len(result.quarantined)} quarantined (absent on purpose)")
    if result.ok:
        log.info("%s: source and warehouse agree", summary)
    else:
        days = ", ".join(str(d.day) for d in result.mismatches[:SHOW_IDS])
        log.error("%s: MISMATCH on %d day(s): %s", summary, len(result.mismatches), days)
    return result.ok


def compare(settings: Settings, target: Target = FACTS) -> Reconciliation:
    conn = with_retries(lambda: source_mysql.connect(settings),
                        f"connect to MySQL at {source_mysql.where(settings)}", settings.max_retries)
    wh = open_warehouse(settings)
    try:
        return _compare(conn, wh, target)
    except pymysql.MySQLError as exc:
        raise source_mysql.source_error(settings, exc) from exc
    finally:
        if conn.open:
            conn.close()
        wh.close()


def _compare(conn: Any, wh: Warehouse, target: Target,
             days: tuple[date, date] | None = None) -> Reconciliation:
    """Every day, or only those in [first, end) when `days` is given (a backfill's sweep): only
    those are read row by row."""
    source = _days(_fetch(conn, SOURCE_DAYS_SQL))
    warehouse = _days(wh.query(target.days_sql))
    result = Reconciliation(days=len(source.keys() | warehouse.keys()),
                            rows=sum(t.rows for t in source.values()))
    quarantine: set[tuple[str, int]] | None = None
    read = False
    for day in sorted(source.keys() | warehouse.keys(), key=lambda d: (d is not None, d)):
        if source.get(day) == warehouse.get(day):
            continue
        if days is not None and (day is None or not days[0] <= day < days[1]):
            continue
        if not read and target.quarantined_sql:  # read once, and only if some day differs
            quarantine = {(key, int(version))
                          for key, version in wh.query(target.quarantined_sql)}
        read = True
        diff = DayDiff(day, source.get(day), warehouse.get(day))
        _drill(conn, wh, diff, target, quarantine)
        result.diffs.append(diff)
    return result


def _days(rows: list[tuple]) -> dict[date | None, DayTotals]:
    return {
        day: DayTotals(int(n), int(sales), Decimal(str(amount)).quantize(Decimal("0.01")),
                       int(fingerprint) % HASH_MODULUS)
        for day, n, sales, amount, fingerprint in rows
    }


def _drill(conn: Any, wh: Warehouse, diff: DayDiff, target: Target,
           quarantine: set[tuple[str, int]] | None) -> None:
    """List the ids that make one day differ.

    A source row that the pipeline's rules refuse now (`transform.refusals`) is explained, not a
    mismatch, only while nothing of it is counted and etl_quarantine holds it at its current
    version; if an older version of it is still counted, that version is stale."""
    if diff.day is None:
        src_rows = _source_rows(conn, SOURCE_NULL_DAY_ROWS_SQL, ())
    else:
        src_rows = _source_rows(conn, SOURCE_DAY_ROWS_SQL,
                                (diff.day, diff.day + timedelta(days=1)))
    src = {row["transaction_id"]: (row["status"], _money(row["amount"]),
                                   micros(row["updated_at"]), refused)
           for row, refused in src_rows}
    dw = {} if diff.day is None else {
        tx: (status, _money(amount))
        for tx, status, amount in wh.query(target.day_rows_sql, {"day": diff.day})
    }
    for tx in sorted(src.keys() | dw.keys()):
        mine, theirs = src.get(tx), dw.get(tx)
        if mine is not None and mine[3] is None and theirs == mine[:2]:
            continue
        if mine is not None and mine[3] is not None:  # refused by the rules, now
            if theirs is not None and target is FACTS:
                diff.stale.append(tx)
            elif theirs is not None:  # the replica's own rules may accept it: compare it
                if theirs != mine[:2]:
                    diff.changed.append(tx)
            elif quarantine is None or (tx, mine[2]) in quarantine:
                diff.quarantined.append(tx)
            else:
                diff.missing.append(tx)
        elif theirs is None:
            diff.missing.append(tx)
        elif mine is None:
            diff.extra.append(tx)
        else:
            diff.changed.append(tx)
    if target is FACTS and diff.missing:
        elsewhere = {tx for (tx,) in wh.query(OTHER_SOURCE_SQL, text_set(diff.missing))}
        diff.other_source = [tx for tx in diff.missing if tx in elsewhere]
        diff.missing = [tx for tx in diff.missing if tx not in elsewhere]


def _source_rows(conn: Any, sql: str, params: tuple) -> list[tuple[dict[str, Any], str | None]]:
    """One day's source rows, each with the reason the pipeline refuses it now (or None)."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    if not rows:
        return []
    columns = {name: pa.array([row[name] for row in rows], SOURCE_ROW_TYPES.get(name))
               for name in names}
    if not pa.types.is_decimal(columns["amount"].type):  # every amount NULL
        columns["amount"] = columns["amount"].cast(pa.decimal128(38, 2))
    return list(zip(rows, transform.refusals(pa.table(columns)), strict=True))


def describe(diff: DayDiff) -> str:
    parts = [f"reconcile day {diff.day}: source {_totals(diff.source)}, "
             f"warehouse {_totals(diff.warehouse)}"]
    for label, ids in (("missing in warehouse", diff.missing),
                       ("only in warehouse", diff.extra),
                       ("different status/amount", diff.changed),
                       ("refused in the source but an older version counted", diff.stale),
                       ("quarantined", diff.quarantined),
                       ("newer in another source (MongoDB)", diff.other_source)):
        if ids:
            more = f" (+{len(ids) - SHOW_IDS} more)" if len(ids) > SHOW_IDS else ""
            parts.append(f"{label} {len(ids)}: {', '.join(map(repr, ids[:SHOW_IDS]))}{more}")
    return "; ".join(parts)


def _totals(totals: DayTotals | None) -> str:
    if totals is None:
        return "none"
    return f"{totals.rows} rows, {totals.sales} sales = {totals.sales_amount}"


def _fetch(conn: Any, sql: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def sweep_deletes(conn: Any, wh: Warehouse, source_now: datetime,
                  days: tuple[date, date] | None = None, rewritten: int | None = None) -> int:
    """Tombstone the facts found only in the warehouse; returns how many (see the docstring).
    `conn` and `wh`: the run's own connection and warehouse; `days`: only the days in
    [first, end) (a backfill), else every day. `rewritten`: the `_loaded_us` stamp of a load
    that has just written every source row of those days: then only the facts it did not
    rewrite can be gone, and only their ids are looked up in the source, instead of comparing
    every day of both sides."""
    if rewritten is None:
        doomed = (_extras(diff, wh) for diff in _compare(conn, wh, FACTS, days).diffs
                  if diff.day is not None and diff.extra)
    else:
        doomed = _unseen_extras(conn, wh, rewritten, days)
    floor = micros(source_now)
    swept = 0
    for rows in doomed:
        if not rows:
            continue
        _tombstone(wh, rows, floor)
        log.warning("%d fact(s) of %s no longer in the source, marked deleted: %s",
                    len(rows), rows[0][7], ", ".join(repr(r[0]) for r in rows[:SHOW_IDS]))
        swept += len(rows)
    return swept


def _extras(diff: DayDiff, wh: Warehouse) -> list[tuple]:
    gone = set(diff.extra)
    return [row for row in wh.query(DAY_FACTS_SQL, {"day": diff.day}) if row[0] in gone]


def _unseen_extras(conn: Any, wh: Warehouse, rewritten: int,
                   days: tuple[date, date] | None) -> Iterator[list[tuple]]:
    """Per day, the facts the load did not rewrite whose id the source no longer has."""
    for (day,) in wh.query(UNSEEN_DAYS_SQL, {"stamp": rewritten}):
        if days is not None and not days[0] <= day < days[1]:
            continue
        unseen = wh.query(UNSEEN_DAY_FACTS_SQL, {"day": day, "stamp": rewritten})
        present = _in_source(conn, [row[0] for row in unseen])
        yield [row for row in unseen if row[0] not in present]


def _in_source(conn: Any, ids: list[str]) -> set[str]:
    found: set[str] = set()
    with conn.cursor() as cur:
        for first in range(0, len(ids), LOOKUP_IDS):
            batch = ids[first:first + LOOKUP_IDS]
            cur.execute("SELECT transaction_id FROM transactions WHERE transaction_id IN "
                        f"({', '.join(['%s'] * len(batch))})", batch)
            found.update(tx for (tx,) in cur.fetchall())
    return found


def _tombstone(wh: Warehouse, rows: list[tuple], floor: int) -> None:
    """Write `_deleted = 1` over these fact rows, at a version above theirs and at least the
    source's clock."""
    values_by_column = zip(*rows, strict=True)
    columns = {name: pa.array(values, kind)
               for (name, kind), values in zip(FACT_COLUMNS, values_by_column, strict=True)}
    columns["_version"] = pa.array([max(int(v) + 1, floor) for v in columns["_version"]
                                    .to_pylist()], pa.uint64())
    columns["_deleted"] = pa.array([1] * len(rows), pa.uint8())
    wh.insert("fact_sales", pa.table(columns))
