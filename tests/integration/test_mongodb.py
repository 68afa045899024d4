"""The MongoDB source (issue 16, batch part): wallet documents into the same star schema as
MySQL, on a real MongoDB wire-protocol server (SecantusDB, scripts/stack.sh up mongodb) over
TCP with pymongo, and both ClickHouse engines. Exact values: per-day sums to the cent against
sums computed from the documents, quarantine reasons, the two sources in one query."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator

import bson
import pytest
from bson.decimal128 import Decimal128
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from ewallet_etl.config import Settings
from ewallet_etl.core import star
from ewallet_etl.core.transform import amount_category
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.mongo import run_mongo
from ewallet_etl.pipelines.mongo_reconcile import reconcile_mongo
from ewallet_etl.pipelines.mongo_stream import run_mongo_stream
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.sources.mongodb import MongoSourceError
from ewallet_etl.state import store
from ewallet_etl.warehouse import release_chdb
from tests.helpers import ROOT, env_for, opened, unique

pytestmark = pytest.mark.integration
sys.path.insert(0, str(ROOT / "seed"))
import mongodb_seed  # noqa: E402

URL = "mongodb://127.0.0.1:37017/?replicaSet=secantus"


@pytest.fixture
def mongo(settings: Settings) -> Iterator[tuple[Settings, object]]:
    """A database of its own on the MongoDB server, and the settings that read it."""
    name = unique("ewt_mg")
    client: MongoClient = MongoClient(URL, serverSelectionTimeoutMS=5000, tz_aware=True)
    coll = client[name]["transactions"]
    coll.insert_one({"transaction_id": "SEEDCOLL", "updated_at": "not a date yet"})
    coll.delete_many({})  # the collection exists, empty
    yield replace(settings, mongodb_url=URL, mongodb_database=name, chunk_rows=50), coll
    client.drop_database(name)
    client.close()


def server_now(coll) -> datetime:
    return coll.database.client.admin.command("hello")["localTime"].replace(tzinfo=timezone.utc)


def facts(settings: Settings) -> dict[str, tuple]:
    with opened(settings.warehouse) as wh:
        rows = wh.query("SELECT transaction_id, toString(amount), amount_category, status, "
                        "toString(transaction_time), source FROM "
                        "(SELECT * FROM analytics_dw.fact_sales FINAL) WHERE _deleted = 0")
    return {r[0]: (Decimal(r[1]), *r[2:]) for r in rows}


def day_sums(settings: Settings, source: str) -> dict[str, Decimal]:
    with opened(settings.warehouse) as wh:
        rows = wh.query("SELECT toString(transaction_date), toString(sum(amount)) FROM "
                        "(SELECT * FROM analytics_dw.fact_sales FINAL) WHERE _deleted = 0 "
                        f"AND source = '{source}' AND status = 'SUCCESS' "
                        "GROUP BY transaction_date")
    return {day: Decimal(total) for day, total in rows}


def test_a_full_then_incremental_load_gives_exactly_the_documents(mongo):
    settings, coll = mongo
    now = server_now(coll)
    docs = mongodb_seed.demo_documents(now) + list(mongodb_seed.generated(300, now))
    coll.insert_many(docs)
    report = run_mongo(settings)
    assert (report.mode, report.documents, report.loaded, report.rejected) == (
        "full", 303, 303, 0)
    loaded = facts(settings)
    assert loaded["MG2001"] == (Decimal("125000.00"), "High", "SUCCESS", "2025-01-10 14:00:00",
                                "mongodb")
    assert loaded["MG2002"][:2] == (Decimal("45000.50"), "Low")  # a text amount, exact
    assert loaded["MG2003"][:3] == (Decimal("30000"), "Low", "FAILED")  # an integer amount
    wanted: dict[str, Decimal] = {}
    for d in docs:  # the per-day sales, computed from the documents themselves
        if d["status"] == "SUCCESS":
            moment = d["transaction_time"]
            day = moment[:10] if isinstance(moment, str) else moment.date().isoformat()
            amount = d["amount"]
            value = amount.to_decimal() if isinstance(amount, Decimal128) else Decimal(amount)
            wanted[day] = wanted.get(day, Decimal(0)) + value
    assert day_sums(settings, "mongodb") == wanted

    # incremental: one document changes (amount and status), one is added
    later = server_now(coll) + timedelta(milliseconds=5)
    coll.update_one({"transaction_id": "MG2003"}, {"$set": {
        "amount": Decimal128("99000.00"), "status": "SUCCESS", "updated_at": later}})
    coll.insert_one({**mongodb_seed.demo_documents(later)[0], "transaction_id": "MG2004"})
    again = run_mongo(settings)
    assert again.mode == "incremental" and again.rejected == 0
    assert 2 <= again.documents < 303  # the window (with its overlap), not everything
    loaded = facts(settings)
    assert loaded["MG2003"][:3] == (Decimal("99000.00"), "Medium", "SUCCESS")
    assert "MG2004" in loaded and len(loaded) == 304
    assert run_mongo(settings).loaded <= again.loaded  # nothing new: nothing doubled
    assert len(facts(settings)) == 304


def bad_utf8_document(now: datetime) -> RawBSONDocument:
    """A document whose user.name holds a byte that is not UTF-8 (pymongo would not write it)."""
    good = bson.encode({"transaction_id": "MGBAD9", "user": {"id": 1, "name": "ZZQ"},
                        "merchant": {"id": 1, "name": "K"}, "amount": Decimal128("1.00"),
                        "status": "SUCCESS", "transaction_time": now, "updated_at": now})
    return RawBSONDocument(good.replace(b"ZZQ", b"Z\xffQ"))


BAD = [
    ({"user": {"id": 1, "name": "A"}}, "missing merchant"),
    ({"user": {"id": "1"}}, "user.id is not an integer"),
    ({"user": {"id": 1 << 40, "name": "A"}}, "user.id out of range (0..4294967295)"),
    ({"amount": 0.1 + 0.2}, "amount is a double with more than 15 significant digits: not "
                            "exact (store a Decimal128 or a decimal text)"),
    ({"amount": "12,50"}, "amount is not a decimal number"),
    ({"amount": Decimal128("NaN")}, "amount is not a finite number"),
    ({"amount": Decimal128("-5.00")}, "amount is negative"),
    ({"amount": Decimal128("1.005")}, "amount has more than 2 decimals"),
    ({"currency": "USD"}, "currency is not IDR"),
    ({"status": "LOST"}, "unknown status"),
    ({"transaction_time": "2025-01-10 10:00"}, "transaction_time has no UTC offset"),
    ({"transaction_time": datetime(1999, 12, 31, tzinfo=timezone.utc)},
     "transaction_time before 2000-01-01"),
    ({"transaction_time": datetime(2200, 1, 1, tzinfo=timezone.utc)},
     "transaction_time more than a day after updated_at"),
]
# A BSON date beyond Python's range (year 10000+) is refused by flatten (tests/unit/
# test_documents.py); SecantusDB, itself in Python, cannot store one to read back.


def test_bad_documents_are_quarantined_with_their_reason_and_the_rest_goes_on(mongo):
    settings, coll = mongo
    now = server_now(coll)
    base = mongodb_seed.demo_documents(now)[0]
    docs = [{**base, **change, "transaction_id": f"MGBAD{i}"} for i, (change, _) in
            enumerate(BAD)]
    docs[0].pop("merchant")
    coll.insert_many(docs + [{**base, "transaction_id": "MGGOOD"},
                             {**base, "transaction_id": "MGNOVER", "updated_at": None}])
    try:  # SecantusDB (0.7.0b3) refuses such bytes itself; a real mongod stores them
        coll.insert_one(bad_utf8_document(now))
        expect_utf8 = True
    except OperationFailure as exc:
        assert "utf-8" in str(exc).lower()
        expect_utf8 = False  # the rule is then shown by tests/unit/test_documents.py
    report = run_mongo(settings)
    assert report.status == "completed_with_rejects"
    assert set(facts(settings)) == {"MGGOOD"}
    with opened(settings.warehouse) as wh:
        quarantined = dict(wh.query(
            "SELECT record_key, reason FROM analytics_dw.etl_quarantine FINAL "
            "WHERE source = 'mongodb'"))
    wanted = {f"MGBAD{i}": reason for i, (_, reason) in enumerate(BAD)}
    wanted["MGNOVER"] = "missing updated_at"
    if expect_utf8:
        wanted["MGBAD9"] = "user.name is not valid UTF-8"
    assert quarantined == wanted
    assert report.rejected == len(wanted) and report.loaded == 1


def test_one_star_schema_two_sources(mongo):
    """MySQL's users and merchants and MongoDB's documents meet in the same dimensions (the same
    natural id, the same key): the user query counts both; an id in both sources is one
    transaction, the newest change wins."""
    settings, coll = mongo
    run_batch(settings)  # the MySQL seed: TX1001, TX1003, TX1004, TX1008
    now = server_now(coll)  # after the MySQL rows' updated_at: this change is newer
    mine = {**mongodb_seed.demo_documents(now)[0], "transaction_id": "TX1001",
            "amount": Decimal128("51000.00")}  # the same transaction, changed later in MongoDB
    coll.insert_many([mine, mongodb_seed.demo_documents(now)[1]])
    assert run_mongo(settings).loaded == 2
    loaded = facts(settings)
    assert loaded["TX1001"][0] == Decimal("51000.00") and loaded["TX1001"][-1] == "mongodb"
    assert loaded["TX1003"][-1] == "mysql"
    with opened(settings.warehouse) as wh:
        text = (ROOT / "Querying_Total_Transaction_User.sql").read_text()
        sql = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        rows = {(r[0], str(r[1])): Decimal(str(r[2])) for r in wh.query(sql.strip().rstrip(";"))}
        names = wh.query("SELECT count() FROM analytics_dw.v_dim_users WHERE name = ''")
    assert rows[("Citra Lestari", "2025-01-12")] == Decimal("45000.50")  # MongoDB's, by name
    assert rows[("Budi Santoso", "2025-01-10")] == Decimal("150000.00")  # MySQL's
    assert rows[("Andi Pratama", "2025-01-10")] == Decimal("51000.00")  # TX1001: the newer
    assert names == [(0,)]  # no member blanked or left empty
    # MySQL's reconcile explains TX1001 (newer in MongoDB) and its full refresh, whose sweep
    # removes facts MySQL lacks, leaves MongoDB's facts alone
    reconciliation = compare(settings)
    assert reconciliation.ok, reconciliation
    assert [tx for d in reconciliation.diffs for tx in d.other_source] == ["TX1001"]
    run_batch(settings, full_refresh=True)
    after = facts(settings)
    assert after["MG2002"][-1] == "mongodb" and after["TX1001"][0] == Decimal("51000.00")
    assert reconcile_mongo(settings).ok


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    release_chdb()  # one process at a time on a chDB folder
    return subprocess.run([sys.executable, "etl_pipeline.py", "--source", "mongodb", *args],
                          cwd=ROOT, env={**env_for(settings), **env}, capture_output=True,
                          text=True, timeout=120)


def test_the_command_reports_a_missing_collection_and_an_unreachable_server_in_one_line(mongo):
    settings, _ = mongo
    missing = cli(settings, MONGODB_DATABASE=settings.mongodb_database,
                  MONGODB_COLLECTION="no_such_collection")
    assert missing.returncode == 2, missing.stderr
    errors = [line for line in missing.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "the collection does not exist" in errors[0]
    gone = cli(settings, MONGODB_URL="mongodb://etl:s3cret@127.0.0.1:1/?serverSelectionTimeout"
               "MS=300", MONGODB_DATABASE=settings.mongodb_database, ETL_MAX_RETRIES="0")
    assert gone.returncode == 1, gone.stderr
    assert "unreachable" in gone.stderr and "s3cret" not in gone.stderr + gone.stdout
    assert "Traceback" not in gone.stderr


def test_settings_refuse_a_url_that_is_not_mongodb():
    with pytest.raises(Exception, match="MONGODB_URL must start with mongodb://"):
        Settings.from_env({"MONGODB_URL": "http://x"})
    assert amount_category(Decimal("45000.50")) == "Low"
    assert MongoSourceError.exit_code == 2


# --- the change stream ---------------------------------------------------------------------

def stream_cli(settings: Settings, *args: str) -> subprocess.Popen:
    release_chdb()
    return subprocess.Popen(
        [sys.executable, "cdc-stream.py", "--source", "mongodb", *args], cwd=ROOT,
        env={**env_for(settings), "MONGODB_DATABASE": settings.mongodb_database,
             "CDC_BATCH_MS": "200"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_change_stream_copies_then_applies_inserts_updates_replaces_and_deletes(mongo):
    settings, coll = mongo
    now = server_now(coll)
    coll.insert_many(mongodb_seed.demo_documents(now))
    first = run_mongo_stream(settings)
    assert first.mode == "snapshot+bounded" and set(facts(settings)) == {
        "MG2001", "MG2002", "MG2003"}
    later = server_now(coll)
    coll.insert_one({**mongodb_seed.demo_documents(later)[0], "transaction_id": "MG3001"})
    coll.update_one({"transaction_id": "MG2002"}, {"$set": {
        "amount": Decimal128("46000.00"), "updated_at": later}})
    old = coll.find_one({"transaction_id": "MG2003"})
    coll.replace_one({"_id": old["_id"]}, {**old, "status": "REFUNDED", "updated_at": later})
    coll.delete_one({"transaction_id": "MG2001"})
    second = run_mongo_stream(settings)
    assert second.mode == "bounded"
    loaded = facts(settings)
    assert set(loaded) == {"MG2002", "MG2003", "MG3001"}  # MG2001 deleted: tombstoned
    assert loaded["MG2002"][0] == Decimal("46000.00") and loaded["MG2003"][2] == "REFUNDED"
    third = run_mongo_stream(settings)  # nothing new: nothing changes
    assert facts(settings) == loaded and third.loaded == 0


def test_a_killed_stream_resumes_from_its_token_without_loss_or_doubling(mongo):
    settings, coll = mongo
    now = server_now(coll)
    coll.insert_many(list(mongodb_seed.generated(50, now)))
    assert run_mongo_stream(settings).loaded == 50
    proc = stream_cli(settings, "--follow")
    try:
        time.sleep(4)  # the stream's start-up: it is killed while following, not before
        for i in range(40):  # changes while the stream runs; it is killed in the middle
            at = server_now(coll)
            coll.update_one({"transaction_id": f"MGEN{i:09d}"}, {"$set": {
                "amount": Decimal128(f"{1000 + i}.25"), "status": "SUCCESS", "updated_at": at}})
            if i == 20:
                time.sleep(0.5)
                proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)  # reaps it and closes its pipes
    assert proc.returncode == -signal.SIGKILL
    resumed = run_mongo_stream(settings)  # from the saved token
    assert resumed.rejected == 0
    loaded = facts(settings)
    assert len(loaded) == 50
    for i in range(40):
        assert loaded[f"MGEN{i:09d}"][0] == Decimal(f"{1000 + i}.25"), i
    with opened(settings.warehouse) as wh:  # the killed run is on record as such
        statuses = [s for (s,) in wh.query(
            "SELECT status FROM analytics_dw.etl_runs WHERE pipeline LIKE 'mongodb-stream:%' "
            "ORDER BY started_us, finished_at")]
    assert "killed" in statuses


def test_a_token_the_server_no_longer_has_is_refused_until_resnapshot(mongo):
    settings, coll = mongo
    coll.insert_many(mongodb_seed.demo_documents(server_now(coll)))
    run_mongo_stream(settings)
    with opened(settings.warehouse) as wh:  # as if the change history had been trimmed
        store.save(wh, "mongodb-stream:" + settings.mongodb_database + ".transactions",
                   "mongodb_stream", {"resume_token": {"_data": "00"}}, "", "test", 1 << 62)
    proc = stream_cli(settings)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "--resnapshot" in errors[0], err
    again = stream_cli(settings, "--resnapshot")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert set(facts(settings)) == {"MG2001", "MG2002", "MG2003"}


# --- reconcile, and inputs a document store holds ---------------------------------------------

def test_reconcile_finds_the_documents_equal_and_names_a_difference(mongo):
    settings, coll = mongo
    now = server_now(coll)
    coll.insert_many(list(mongodb_seed.generated(120, now))
                     + [{**mongodb_seed.demo_documents(now)[0], "transaction_id": "MGNEG",
                         "amount": Decimal128("-1.00")}])  # refused: expected absent
    run_mongo(settings)
    equal = reconcile_mongo(settings)
    assert equal.ok and equal.documents == 121 and equal.refused == 1
    assert cli(settings, "--reconcile", MONGODB_DATABASE=settings.mongodb_database
               ).returncode == 0
    with opened(settings.warehouse) as wh:  # a fact lost from the warehouse
        wh.insert("fact_sales", star.tombstones(["MGEN000000007"], [1 << 62]))
    different = reconcile_mongo(settings)
    assert not different.ok
    (diff,) = different.diffs.values()
    assert diff["missing"] == ["MGEN000000007"] and diff["extra"] == []
    assert cli(settings, "--reconcile", MONGODB_DATABASE=settings.mongodb_database
               ).returncode == 4


def test_a_large_deeply_nested_document_loads_its_transaction(mongo):
    settings, coll = mongo
    now = server_now(coll)
    nested: dict = {"leaf": 1}
    for _ in range(80):  # deep, and irrelevant to the star schema
        nested = {"n": nested}
    big = {**mongodb_seed.demo_documents(now)[0], "transaction_id": "MGBIG",
           "items": [{"sku": f"S{i}", "note": "x" * 1000} for i in range(15_000)],
           "device": nested}  # ~15 MB, near MongoDB's 16 MB document limit
    coll.insert_one(big)
    report = run_mongo(settings)
    assert (report.loaded, report.rejected) == (1, 0)
    assert facts(settings)["MGBIG"][0] == Decimal("125000.00")


def test_wrong_credentials_are_a_configuration_error_in_one_line(mongo, tmp_path):
    settings, _ = mongo
    port = 37117
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/secantusd-py"), "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", str(tmp_path / "auth"), "--auth", "--log-level", "ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe: MongoClient = MongoClient(f"mongodb://127.0.0.1:{port}/",
                                             serverSelectionTimeoutMS=500)
            try:
                probe.admin.command("ping")
                break
            except Exception:
                time.sleep(0.3)
            finally:
                probe.close()
        proc = cli(settings, MONGODB_URL=f"mongodb://nobody:Wr0ngPass@127.0.0.1:{port}/"
                   "?authSource=admin", MONGODB_DATABASE="ewallet", ETL_MAX_RETRIES="0")
    finally:
        server.terminate()
        server.wait(30)
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert "authentication failed" in errors[0] and "Wr0ngPass" not in proc.stderr
