"""The value rules of a transaction, written down once: what a status and an amount may be, and
the reason given when they are not. `transform` applies them to Arrow columns (the batch),
`changes` to one value at a time (change events); both take their bounds and texts from here."""

from __future__ import annotations

from decimal import Decimal

SALE_STATUS = "SUCCESS"
MAX_ID = (1 << 32) - 1  # user and merchant ids: the source's INT UNSIGNED
KNOWN_STATUSES = ("SUCCESS", "FAILED", "PENDING", "REFUNDED")

AMOUNT_SCALE = 2  # the warehouse's Decimal(18, 2)
CENT = Decimal(1).scaleb(-AMOUNT_SCALE)
MAX_AMOUNT = Decimal("9999999999999999.99")  # the largest Decimal(18, 2)
MAX_CENTS = 999_999_999_999_999_999

AMOUNT_NULL = "amount is NULL"
AMOUNT_NEGATIVE = "amount is negative"
AMOUNT_TOO_LARGE = "amount exceeds Decimal(18, 2)"
AMOUNT_TOO_PRECISE = "amount has more than 2 decimals"
UNKNOWN_STATUS = "unknown status"


def amount_problem(amount: Decimal) -> str | None:
    """Why a (finite) amount is refused, or None: the scalar form of the batch's amount rules."""
    if amount < 0:
        return AMOUNT_NEGATIVE
    if amount > MAX_AMOUNT:
        return AMOUNT_TOO_LARGE
    exponent = amount.as_tuple().exponent  # >= -2: at most cents, no quantize needed
    if not (isinstance(exponent, int) and exponent >= -2) and amount != amount.quantize(CENT):
        return AMOUNT_TOO_PRECISE
    return None


def status_problem(status: object) -> str | None:
    return None if isinstance(status, str) and status in KNOWN_STATUSES else UNKNOWN_STATUS


def is_decimal_text(text: str) -> bool:
    """A plain decimal text: optional minus, digits, optional fraction (no exponent, no spaces)."""
    whole, _, fraction = text.removeprefix("-").partition(".")
    return whole.isdigit() and whole.isascii() and (
        fraction == "" and "." not in text or fraction.isdigit() and fraction.isascii())
