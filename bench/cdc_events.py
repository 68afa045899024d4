"""The CDC replay's input: N change events as JSON Lines in the write-up's flat format
(op, transaction_id, source columns, _version), and the state they must leave behind.

Half the events insert new transactions, 40% update one of them later (status and amount),
10% delete one (the key's last event). Versions increase with the event number, so the expected
final state is simply the last event per key.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

START = datetime(2025, 4, 1, tzinfo=timezone.utc)
STATUSES = ("SUCCESS", "PENDING", "FAILED", "REFUNDED")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_events(path: Path, n_events: int, seed: int = 7) -> dict[str, object]:
    """Write the file; return the expected state: rows, sum of amounts, sales (SUCCESS)."""
    rng = random.Random(seed)
    n_inserts = n_events // 2
    n_deletes = n_events // 10
    n_updates = n_events - n_inserts - n_deletes
    state: dict[str, dict] = {}
    lines: list[str] = []

    def emit(op: str, row: dict, number: int) -> None:
        version = _iso(START + timedelta(microseconds=number * 1000))
        lines.append(json.dumps({"op": op, **row, "_version": version}))

    for i in range(n_inserts):
        key = f"CDC{i + 1:010d}"
        row = {"transaction_id": key, "user_id": rng.randint(1, 10_000),
               "merchant_id": rng.randint(1, 1_000),
               "amount": f"{rng.randint(100, 50_000_000) / 100:.2f}",
               "status": rng.choice(STATUSES),
               "transaction_time": (START + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        state[key] = row
        emit("insert", row, len(lines))
    keys = list(state)
    for _ in range(n_updates):
        row = dict(state[rng.choice(keys)])
        row["status"] = rng.choice(STATUSES)
        row["amount"] = f"{rng.randint(100, 50_000_000) / 100:.2f}"
        state[row["transaction_id"]] = row
        emit("update", row, len(lines))
    for key in rng.sample(keys, n_deletes):
        emit("delete", {"transaction_id": key}, len(lines))
        del state[key]
    path.write_text("\n".join(lines) + "\n")
    return {"rows": len(state),
            "sum_amount": str(sum((Decimal(r["amount"]) for r in state.values()),
                                  Decimal(0)).quantize(Decimal("0.01"))),
            "sales": sum(1 for r in state.values() if r["status"] == "SUCCESS"),
            "events": len(lines)}
