"""MongoDB wallet documents -> the star schema's source rows, pure: the flattening rules, once.

One document per transaction (database `ewallet`, collection `transactions` by default):

    {_id, transaction_id, user: {id, name, email, city}, merchant: {id, name, category, city},
     amount, currency, status, transaction_time, updated_at, items: [...], device: {...}}

A document becomes one `Flat`: the transaction (then checked by the batch's own transform,
`transform.transform_transactions`: the same amount, status and time rules as MySQL rows) and
its user and merchant as they were on the document. Or it is refused (`BadDocument`) with the
first rule it breaks; the caller quarantines it with its raw JSON. The rules:

* `transaction_id`: a string of 1-64 characters without control characters. Required.
* `user.id`, `merchant.id`: integers 0..4294967295 (the MySQL ids: the same natural id gives
  the same surrogate key, whichever source it came from). Required. `name`, `email`, `city`,
  `category`: strings; missing or null is empty.
* `amount`: exact. Decimal128 as it is; a decimal text (`"50000.00"`) or an integer as its
  value; a double only through its shortest decimal form (`repr`) and only with at most 15
  significant digits, so the value is the one the writer wrote (every decimal of 15 digits
  survives a double unchanged); NaN and infinities are refused. Then the batch's rules
  (negative, more than 2 decimals, over Decimal(18, 2)) refuse what MySQL rows would.
* `currency`: missing or `IDR` (the warehouse holds IDR; the categories are IDR bounds).
* `status`: a string; the batch refuses an unknown one.
* `transaction_time`: a BSON date, or an ISO-8601 text with an offset. Required.
* `updated_at`: a BSON date. Required. It is the version (microseconds; BSON dates have
  milliseconds), as MySQL's, and the key of the incremental window, which is a date range: a
  text would be loaded by a full load and then never seen again by an incremental run, so it is
  refused, and quarantined by full loads (the only runs that read such documents).
* Both within ClickHouse's `DateTime` (1970-01-01 .. 2106-02-07 06:28:15 UTC), as the change
  streams' rule (`core.changes`): beyond it, the server refuses the whole insert and chDB clamps.
* `updated_at` not after `latest` (the server's clock plus a tolerance, given by the caller):
  a change time in the future would hold its transaction at a version no correction can beat.
* Strings must be valid UTF-8 (read with `surrogateescape`, so a bad byte is found here, named,
  and the document quarantined instead of failing the whole read).
* `items`, `device` and any other field are not part of the star schema and are ignored.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, NamedTuple

from ewallet_etl.core.changes import MAX_DATETIME
from ewallet_etl.core.events import KEY_PATTERN
from ewallet_etl.core.instants import EPOCH, micros
from ewallet_etl.core.value_rules import MAX_ID, is_decimal_text

EXACT_DOUBLE_DIGITS = 15
CURRENCY = "IDR"
# How far a writer's clock may run ahead of the server's before updated_at is "in the future".
FUTURE_TOLERANCE = timedelta(minutes=5)
LAST_DATETIME = EPOCH + timedelta(seconds=MAX_DATETIME)  # ClickHouse DateTime's last second
NOT_A_DATE_UPDATED_AT = "updated_at is not a BSON date (an incremental window cannot see a text)"
FUTURE = "updated_at is in the future"


class BadDocument(ValueError):
    """A document that breaks a rule; the message is the rule (counted as the reason)."""


class Flat(NamedTuple):
    transaction_id: str
    user_id: int
    merchant_id: int
    amount: Decimal
    status: str | None
    transaction_time: datetime  # aware, UTC
    version: int  # updated_at in microseconds
    user: tuple[str, str, str]  # name, email, city
    merchant: tuple[str, str, str]  # name, category, city


def flatten(doc: Mapping[str, Any], latest: datetime | None = None) -> Flat:
    """One document -> its Flat row, or BadDocument naming the first rule it breaks.
    `latest`: the newest acceptable updated_at (the server's clock + FUTURE_TOLERANCE)."""
    key = doc.get("transaction_id")
    if key is None:
        raise BadDocument("missing transaction_id")
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise BadDocument("transaction_id is not a string of 1-64 printable characters")
    user, merchant = _member(doc, "user"), _member(doc, "merchant")
    currency = doc.get("currency")
    if currency is not None and currency != CURRENCY:
        raise BadDocument("currency is not IDR")
    status = doc.get("status")
    if status is not None and not isinstance(status, str):
        raise BadDocument("status is not a string")
    updated = _updated_at(doc.get("updated_at"), latest)
    return Flat(
        _text(key, "transaction_id"), _id(user, "user"), _id(merchant, "merchant"),
        amount(doc.get("amount")), status, _in_range(_moment(doc.get("transaction_time"),
                                                             "transaction_time"),
                                                     "transaction_time"),
        micros(updated),
        _texts(user, "user", ("name", "email", "city")),
        _texts(merchant, "merchant", ("name", "category", "city")),
    )


def _texts(member: Mapping[str, Any], name: str,
           fields: tuple[str, str, str]) -> tuple[str, str, str]:
    first, second, third = (_text(member.get(f), f"{name}.{f}") for f in fields)
    return first, second, third


def amount(value: Any) -> Decimal:
    """The amount, exactly (see the module docstring), before the batch's value rules."""
    if value is None:
        raise BadDocument("missing amount")
    to_decimal = getattr(value, "to_decimal", None)  # bson.Decimal128, without importing bson
    if to_decimal is not None:
        result = to_decimal()
    elif isinstance(value, int) and not isinstance(value, bool):  # bson.Int64 is an int
        result = Decimal(int(value))
    elif isinstance(value, str) and is_decimal_text(value):
        result = Decimal(value)
    elif type(value) is float:
        text = repr(value)
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise BadDocument("amount is not a number") from None
        if result.is_finite() and len(result.normalize().as_tuple().digits) > EXACT_DOUBLE_DIGITS:
            raise BadDocument("amount is a double with more than 15 significant digits: "
                              "not exact (store a Decimal128 or a decimal text)")
    else:
        raise BadDocument("amount is not a decimal number")
    if not result.is_finite():
        raise BadDocument("amount is not a finite number")
    return result


def _member(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    if value is None:
        raise BadDocument(f"missing {name}")
    if not isinstance(value, Mapping):
        raise BadDocument(f"{name} is not an object")
    return value


def _id(member: Mapping[str, Any], name: str) -> int:
    value = member.get("id")
    if value is None:
        raise BadDocument(f"missing {name}.id")
    if isinstance(value, bool) or not isinstance(value, int):  # bson.Int64 is an int
        raise BadDocument(f"{name}.id is not an integer")
    if not 0 <= value <= MAX_ID:
        raise BadDocument(f"{name}.id out of range (0..4294967295)")
    return int(value)


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadDocument(f"{name} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate: a byte that was not UTF-8 (surrogateescape)
        raise BadDocument(f"{name} is not valid UTF-8") from None
    return value


def _updated_at(value: Any, latest: datetime | None) -> datetime:
    if value is None:
        raise BadDocument("missing updated_at")
    if not isinstance(value, datetime) and type(value).__name__ != "DatetimeMS":
        raise BadDocument(NOT_A_DATE_UPDATED_AT)
    moment = _in_range(_moment(value, "updated_at"), "updated_at")
    if latest is not None and moment > latest:
        raise BadDocument(FUTURE)
    return moment


def refused_version(doc: Mapping[str, Any], latest: datetime, now_us: int) -> int:
    """The version of a refused document (its quarantine row, and the retraction of what it
    loaded before): its updated_at when that is a date the rules accept, else the run's clock
    (`now_us`): above every version loaded so far, below any later correction."""
    try:
        return micros(_updated_at(doc.get("updated_at"), latest))
    except BadDocument:
        return now_us


def _in_range(moment: datetime, name: str) -> datetime:
    if not EPOCH <= moment <= LAST_DATETIME:
        raise BadDocument(f"{name} outside DateTime range (1970-01-01..2106-02-07)")
    return moment


def _moment(value: Any, name: str) -> datetime:
    if value is None:
        raise BadDocument(f"missing {name}")
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise BadDocument(f"{name} is not a date") from None
        if moment.tzinfo is None:
            raise BadDocument(f"{name} has no UTC offset")
        return moment
    if type(value).__name__ == "DatetimeMS":  # a BSON date outside Python's range
        raise BadDocument(f"{name} is out of range")
    raise BadDocument(f"{name} is not a date")


def doc_key(doc_id: Any) -> str:
    """A document's _id as text, its type kept apart (an ObjectId and a string of the same
    hex are two documents)."""
    kind = type(doc_id).__name__
    if kind == "ObjectId":
        return f"oid:{doc_id}"
    if isinstance(doc_id, str):
        return f"str:{doc_id}"
    return f"{kind}:{doc_id!r}"
