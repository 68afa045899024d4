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
from ewallet_etl.core.instants import micros
from ewallet_etl.core.transform import amount_category
from ewallet_etl.pipelines import mongo as mongo_pipeline
from ewallet_etl.pipelines.batch import run_batch
from ewallet_etl.pipelines.mongo import run_mongo
from ewallet_etl.pipelines.mongo_reconcile import reconcile_mongo
from ewallet_etl.pipelines.mongo_stream import run_mongo_stream
from ewallet_etl.pipelines.reconcile import compare
from ewallet_etl.sources.mongodb import MongoSourceError
from ewallet_etl.state import store
from ewallet_etl.warehouse import release_chdb
from tests.helpers import ROOT, env_for, mysql_exec, opened, unique

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
    ({"transaction_time": datetime(2100, 1, 1, tzinfo=timezone.utc)},
     "transaction_time more than a day after updated_at"),
    ({"transaction_time": datetime(2107, 1, 1, tzinfo=timezone.utc)},  # blocked the server load
     "transaction_time outside DateTime range (1970-01-01..2106-02-07)"),
    ({"updated_at": "2025-01-10T10:00:00+00:00"},
     "updated_at is not a BSON date (an incremental window cannot see a text)"),
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


def test_a_following_stream_ends_cleanly_at_a_signal_after_its_micro_batch(mongo):
    """While it streams, a first SIGTERM lets the micro-batch in flight land, saves its token
    and ends the run as usual (exit 0); the hung-server case abandons instead
    (test_signals.py)."""
    settings, coll = mongo
    coll.insert_many(mongodb_seed.demo_documents(server_now(coll)))
    proc = stream_cli(settings, "--follow")
    try:
        time.sleep(4)  # past the copy: following
        coll.update_one({"transaction_id": "MG2002"}, {"$set": {
            "amount": Decimal128("777.00"), "updated_at": server_now(coll)}})
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and " ERROR " not in err, err
    assert facts(settings)["MG2002"][0] == Decimal("777.00")
    assert run_mongo_stream(settings).loaded == 0  # its token was saved: nothing again


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


# --- the audit of issue 16 ---------------------------------------------------------------------

def raw_facts(settings: Settings, tx: str) -> list[tuple]:
    """Every fact_sales row of one transaction (tombstones too), oldest version first."""
    with opened(settings.warehouse) as wh:
        return wh.query("SELECT _version, _deleted, source, toString(amount) FROM "
                        "analytics_dw.fact_sales WHERE transaction_id = {tx:String} "
                        "ORDER BY _version", {"tx": tx})


def quarantine(settings: Settings) -> dict[str, str]:
    with opened(settings.warehouse) as wh:
        return dict(wh.query("SELECT record_key, argMax(reason, _version) FROM "
                             "analytics_dw.etl_quarantine WHERE source = 'mongodb' "
                             "GROUP BY record_key"))


def test_int64_amounts_load_exactly(mongo):
    settings, coll = mongo
    base = mongodb_seed.demo_documents(server_now(coll))[0]
    coll.insert_many([{**base, "transaction_id": "MGL1", "amount": bson.Int64(5000)},
                      {**base, "transaction_id": "MGL2", "amount": bson.Int64(3_000_000_000)}])
    report = run_mongo(settings)
    assert (report.loaded, report.rejected) == (2, 0), report.reject_reasons
    loaded = facts(settings)
    assert loaded["MGL1"][0] == Decimal(5000) and loaded["MGL2"][0] == Decimal(3_000_000_000)


def test_future_and_out_of_range_change_times_are_read_and_quarantined(mongo):
    """Beyond the window's high: a full load reads them to quarantine them, and so does an
    incremental run (one index range above the server's clock + tolerance)."""
    settings, coll = mongo
    now = server_now(coll)
    base = mongodb_seed.demo_documents(now)[0]
    coll.insert_many([{**base, "transaction_id": "MGOK"},
                      {**base, "transaction_id": "MGF1", "updated_at": now + timedelta(days=1)},
                      *({**base, "transaction_id": f"MGY{y}",
                         "updated_at": datetime(y, 1, 1, tzinfo=timezone.utc)}
                        for y in (2107, 2200, 9999))])
    report = run_mongo(settings)
    assert (report.documents, report.loaded, report.rejected) == (5, 1, 4)
    assert quarantine(settings) == {
        "MGF1": "updated_at is in the future",
        **{f"MGY{y}": "updated_at outside DateTime range (1970-01-01..2106-02-07)"
           for y in (2107, 2200, 9999)}}
    coll.insert_one({**base, "transaction_id": "MGF2", "updated_at": now + timedelta(days=2)})
    again = run_mongo(settings)
    assert again.mode == "incremental" and "MGF2" in quarantine(settings)
    assert again.reject_reasons.get("updated_at is in the future") == 2
    assert set(facts(settings)) == {"MGOK"}
    assert reconcile_mongo(settings).ok


def test_a_text_updated_at_is_quarantined_not_left_stale(mongo):
    """The audit's case: a document whose updated_at is a text, changed to amount 777: a full
    load had 100 and no incremental run ever saw the change. Now the text is refused (the
    incremental window cannot see it) and what the document loaded before is retracted."""
    settings, coll = mongo
    now = server_now(coll)
    base = mongodb_seed.demo_documents(now)[0]
    coll.insert_one({**base, "transaction_id": "MGTXT", "amount": Decimal128("100.00")})
    run_mongo(settings)
    assert facts(settings)["MGTXT"][0] == Decimal("100.00")
    coll.update_one({"transaction_id": "MGTXT"}, {"$set": {
        "amount": Decimal128("777.00"), "updated_at": "2030-01-01T00:00:00+00:00"}})
    full = run_mongo(settings, full_refresh=True)
    assert full.rejected == 1 and "MGTXT" not in facts(settings)
    assert quarantine(settings)["MGTXT"] == (
        "updated_at is not a BSON date (an incremental window cannot see a text)")
    coll.update_one({"transaction_id": "MGTXT"}, {"$set": {"updated_at": server_now(coll)}})
    run_mongo(settings)  # fixed: an incremental run sees it again
    assert facts(settings)["MGTXT"][0] == Decimal("777.00")


def test_a_loaded_document_changed_into_a_refused_state_is_retracted(mongo):
    settings, coll = mongo
    now = server_now(coll)
    coll.insert_many(mongodb_seed.demo_documents(now))
    run_mongo(settings)
    later = server_now(coll) + timedelta(milliseconds=5)
    coll.update_one({"transaction_id": "MG2001"}, {"$set": {"amount": "abc",
                                                           "updated_at": later}})
    coll.update_one({"transaction_id": "MG2003"}, {"$set": {"status": "LOST",
                                                           "updated_at": later}})
    report = run_mongo(settings)
    assert report.rejected == 2
    assert set(facts(settings)) == {"MG2002"}
    for tx in ("MG2001", "MG2003"):  # retracted by a tombstone of source mongodb
        version, deleted, source, _ = raw_facts(settings, tx)[-1]
        assert (deleted, source) == (1, "mongodb") and version == micros(later)
    assert reconcile_mongo(settings).ok


def test_a_changed_transaction_id_tombstones_the_old_one_in_batch_and_stream(mongo):
    settings, coll = mongo
    now = server_now(coll)
    coll.insert_many(mongodb_seed.demo_documents(now))
    run_mongo(settings)
    run_mongo_stream(settings)
    coll.update_one({"transaction_id": "MG2001"}, {"$set": {
        "transaction_id": "MG2001B", "updated_at": server_now(coll)}})
    run_mongo(settings)
    assert set(facts(settings)) == {"MG2001B", "MG2002", "MG2003"}  # not MG2001 as well
    assert raw_facts(settings, "MG2001")[-1][1:3] == (1, "mongodb")
    coll.update_one({"transaction_id": "MG2002"}, {"$set": {
        "transaction_id": "MG2002B", "updated_at": server_now(coll)}})
    run_mongo_stream(settings)
    assert set(facts(settings)) == {"MG2001B", "MG2002B", "MG2003"}
    assert reconcile_mongo(settings).ok


def test_one_transaction_id_in_two_documents_the_newest_wins_and_deletes_are_per_document(
        mongo):
    """The rule: a transaction id is one fact; the document with the newest updated_at gives
    it. Deleting one document leaves the transaction to the others that still carry it (the
    newest of them, loaded again above the deleted one's version); deleting the last one
    tombstones it."""
    settings, coll = mongo
    now = server_now(coll)
    base = mongodb_seed.demo_documents(now)[0]
    coll.insert_many([
        {**base, "_id": "dup-old", "transaction_id": "MGDUP", "amount": Decimal128("1.00"),
         "updated_at": now - timedelta(seconds=10)},
        {**base, "_id": "dup-new", "transaction_id": "MGDUP", "amount": Decimal128("2.00")}])
    run_mongo_stream(settings)  # the copy
    assert facts(settings)["MGDUP"][0] == Decimal("2.00")
    assert reconcile_mongo(settings).ok
    coll.delete_one({"_id": "dup-old"})  # the loser: the winner stays
    run_mongo_stream(settings)
    assert facts(settings)["MGDUP"][0] == Decimal("2.00")
    coll.insert_one({**base, "_id": "dup-old", "transaction_id": "MGDUP",
                     "amount": Decimal128("1.00"), "updated_at": now - timedelta(seconds=10)})
    run_mongo_stream(settings)
    coll.delete_one({"_id": "dup-new"})  # the winner: the other document gives the fact
    run_mongo_stream(settings)
    assert facts(settings)["MGDUP"][0] == Decimal("1.00")
    assert reconcile_mongo(settings).ok
    coll.delete_one({"_id": "dup-old"})  # the last one: gone
    run_mongo_stream(settings)
    assert "MGDUP" not in facts(settings)
    assert reconcile_mongo(settings).ok


def test_a_delete_and_reinsert_in_one_micro_batch_ends_with_the_document(mongo):
    settings, coll = mongo
    now = server_now(coll)
    coll.insert_many(mongodb_seed.demo_documents(now))
    run_mongo_stream(settings)
    old = coll.find_one({"transaction_id": "MG2001"})
    coll.delete_one({"_id": old["_id"]})
    coll.insert_one({**old, "amount": Decimal128("126000.00"), "updated_at": server_now(coll)})
    run_mongo_stream(settings)  # both events in one micro-batch
    assert facts(settings)["MG2001"][0] == Decimal("126000.00")
    run_mongo_stream(settings)  # and a later batch leaves it so
    assert facts(settings)["MG2001"][0] == Decimal("126000.00")


def test_a_document_written_behind_the_read_is_caught_by_the_overlap(mongo, monkeypatch):
    """A writer whose clock is behind the server's commits while the run reads: its updated_at
    is inside the window, at a place the cursor has passed. The next run's overlap
    (ETL_OVERLAP_SECONDS, 0 in the other tests) re-reads it."""
    settings, coll = mongo
    settings = replace(settings, overlap_seconds=300, chunk_rows=20)
    now = server_now(coll)
    coll.insert_many(list(mongodb_seed.generated(60, now)))
    run_mongo(settings)
    real = mongo_pipeline.source_mongo.documents
    late = {**mongodb_seed.demo_documents(now)[0], "transaction_id": "MGLATE"}

    def reading(*args, **kwargs):
        for i, docs in enumerate(real(*args, **kwargs)):
            yield docs
            if i == 0:  # committed now, stamped 30 s ago: behind the cursor
                coll.insert_one({**late, "updated_at": server_now(coll) - timedelta(seconds=30)})

    monkeypatch.setattr(mongo_pipeline.source_mongo, "documents", reading)
    second = run_mongo(settings)
    assert second.mode == "incremental" and second.documents >= 60  # the overlap: all again
    monkeypatch.setattr(mongo_pipeline.source_mongo, "documents", real)
    assert "MGLATE" not in facts(settings)  # missed by the run it was written under
    run_mongo(settings)
    assert facts(settings)["MGLATE"][0] == Decimal("125000.00")  # caught by the next one
    assert len(facts(settings)) == 61


def test_the_merchant_query_answers_across_both_sources(mongo):
    """Querying_Total_Transaction_Merchant.sql, unchanged, against the sales counted in both
    sources themselves."""
    settings, coll = mongo
    run_batch(settings)
    coll.insert_many(mongodb_seed.demo_documents(server_now(coll)))
    run_mongo(settings)
    wanted: dict[tuple[str, str], int] = {}
    for name, category, n in mysql_exec(
            settings.mysql_database,
            "SELECT m.name, m.category, count(*) FROM transactions t JOIN merchants m "
            "USING (merchant_id) WHERE t.status = 'SUCCESS' GROUP BY m.name, m.category"):
        wanted[(name, category)] = int(n)
    for doc in coll.find({"status": "SUCCESS"}):
        key = (doc["merchant"]["name"], doc["merchant"]["category"])
        wanted[key] = wanted.get(key, 0) + 1
    with opened(settings.warehouse) as wh:
        text = (ROOT / "Querying_Total_Transaction_Merchant.sql").read_text()
        sql = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        rows = {(r[0], r[1]): int(r[2]) for r in wh.query(sql.strip().rstrip(";"))}
    assert rows == wanted
    assert rows[("Tokopedia", "E-commerce")] == 2  # TX1003 (MySQL) and MG2001 (MongoDB)


def test_the_seed_is_idempotent(mongo, monkeypatch):
    """Run twice (as the compose seed service is, on every `up`): the same documents, once."""
    settings, coll = mongo
    monkeypatch.setenv("MONGODB_URL", URL)
    monkeypatch.setenv("MONGODB_DATABASE", settings.mongodb_database)
    assert mongodb_seed.main([]) == 0
    first = {d["_id"]: d for d in coll.find()}
    assert mongodb_seed.main([]) == 0
    assert {d["_id"]: d for d in coll.find()} == first  # untouched: not even updated_at
    assert sorted(d["transaction_id"] for d in first.values()) == ["MG2001", "MG2002", "MG2003"]
    assert mongodb_seed.main(["--generate", "30"]) == 0
    assert mongodb_seed.main(["--generate", "30"]) == 0
    assert coll.count_documents({}) == 33


def test_the_keys_of_a_whole_cursor_batch_are_looked_up_in_one_go(settings):
    """ETL_CHUNK_ROWS documents' _ids (20,000 in the bench) in the mongo_keys lookup: beyond the
    server's max_query_size (256 KiB on 18.16) as one text, so they go in slices."""
    ids = [f"oid:{i:024x}" for i in range(20_000)]
    with opened(settings.warehouse) as wh:
        mongo_pipeline._insert_keys(wh, [(ids[7], "MGK7", 5), (ids[19_999], "MGK9", 6)])
        assert mongo_pipeline.previous_keys(wh, ids) == {ids[7]: ("MGK7", 5),
                                                         ids[19_999]: ("MGK9", 6)}
