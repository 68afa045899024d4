"""The MongoDB change stream's pure parts: which server errors mean a lost change history,
and the reduction of a micro-batch to the last event per document."""

from __future__ import annotations

import pytest
from bson import ObjectId
from pymongo.errors import OperationFailure

from ewallet_etl.config import Settings
from ewallet_etl.pipelines.mongo_stream import TokenLost, last_per_document, token_lost

SETTINGS = Settings.from_env({"MONGODB_URL": "mongodb://u:secret@h:1/?replicaSet=r"})


@pytest.mark.parametrize("code", [286, 280, 260, 9])
def test_a_lost_history_stops_with_the_resnapshot_advice(code):
    """286 ChangeStreamHistoryLost and 280 ChangeStreamFatalError as a server says them at
    the start or while following; 260/9: a token it cannot resume from."""
    lost = token_lost(SETTINGS, OperationFailure("Resume of change stream was not possible",
                                                 code=code))
    assert isinstance(lost, TokenLost) and lost.exit_code == 2
    assert "--resnapshot" in str(lost) and "secret" not in str(lost)


@pytest.mark.parametrize("error", [OperationFailure("not primary", code=10107),
                                   OperationFailure("interrupted", code=11601),
                                   ValueError("x")])
def test_other_errors_are_not_a_lost_history(error):
    assert token_lost(SETTINGS, error) is None


def event(kind: str, key: object, n: int) -> dict:
    return {"operationType": kind, "documentKey": {"_id": key}, "n": n}


def test_a_batch_keeps_the_last_event_of_each_document_in_stream_order():
    a, b = ObjectId(), "b"
    events = [event("insert", a, 1), event("delete", b, 2), event("delete", a, 3),
              event("insert", b, 4), event("insert", a, 5),
              {"operationType": "drop", "n": 6}]
    assert [e["n"] for e in last_per_document(events)] == [4, 5]


def test_an_object_id_and_its_hex_text_are_two_documents():
    a = ObjectId()
    events = [event("insert", a, 1), event("delete", str(a), 2)]
    assert [e["n"] for e in last_per_document(events)] == [1, 2]
