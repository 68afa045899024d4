"""Do the users and merchants a chunk of transactions refers to exist in the source?

A source without enforced foreign keys (a bulk load with `foreign_key_checks = 0`, a sharded
copy) can hold transactions whose user or merchant has no row; the transform rejects those.
Asking inside the extract (`user_id IN (SELECT user_id FROM users)` per row) doubled
MariaDB's CPU for a full load. Here each distinct id is asked once per run instead, and only
when a chunk brings ids not yet seen: after the first chunks of a full load, none do.

An id seen to exist stays known for the run. That matches the single consistent read it
replaces: a row that existed when the run looked counts as found. A missing id is asked again
whenever it shows up (it may have been inserted since).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pymysql

# (table, id column): identifiers from this fixed list only.
DIMENSION_IDS = {"user_id": ("users", "user_id"), "merchant_id": ("merchants", "merchant_id")}
IDS_PER_QUERY = 5_000
# Ids below this are looked up in a table of flags (one byte per id, so at most 16 MiB): one
# gather per chunk instead of a hash of its distinct ids. Larger ids take the sorted path.
DENSE_IDS = 1 << 24


class ExistingIds:
    def __init__(self, conn: pymysql.connections.Connection, fact_column: str) -> None:
        self._conn = conn
        self._table, self._column = DIMENSION_IDS[fact_column]
        self._known = np.zeros(0, dtype=np.int64)
        self._flags = np.zeros(0, dtype=np.int8)  # 1 at each known id below DENSE_IDS

    def found(self, ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Per row: 1 where the id has a row in the source's dimension table, else 0."""
        valid = pc.fill_null(pc.is_valid(ids), False).to_numpy(zero_copy_only=False)
        values = pc.fill_null(ids, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        top = int(values.max()) if values.size else 0
        if values.size and 0 <= values.min() and top < DENSE_IDS:
            return self._found_dense(values, valid, top)
        return self._found_sorted(values, valid)

    def _found_dense(self, values: np.ndarray, valid: np.ndarray, top: int) -> np.ndarray:
        if self._flags.size <= top:  # grown to the largest id seen, once
            flags = np.zeros(top + 1, dtype=np.int8)
            flags[:self._flags.size] = self._flags
            self._flags = flags
        found = self._flags[values] & valid
        if not found[valid].all():  # ids not known yet: asked (again: they may exist now)
            unseen = np.unique(values[valid & (found == 0)])
            self._flags[self._ask(unseen)] = 1
            found = self._flags[values] & valid
        return found.astype(np.int8)

    def _found_sorted(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        distinct = np.unique(values[valid])
        unseen = distinct[~np.isin(distinct, self._known, assume_unique=True)]
        if unseen.size:
            present = self._ask(unseen)
            self._known = np.union1d(self._known, present)
        return (valid & np.isin(values, self._known)).astype(np.int8)

    def _ask(self, ids: np.ndarray) -> np.ndarray:
        """The ids among `ids` that have a row, bound as parameters, IDS_PER_QUERY at a time."""
        present: list[np.ndarray] = []
        with self._conn.cursor() as cur:
            for start in range(0, ids.size, IDS_PER_QUERY):
                part = ids[start:start + IDS_PER_QUERY].tolist()
                marks = ", ".join(["%s"] * len(part))
                cur.execute(f"SELECT COUNT(*) FROM {self._table} "
                            f"WHERE {self._column} IN ({marks})", part)
                (count,) = cur.fetchone()
                if count == len(part):  # the usual answer: one row back, not thousands
                    present.append(np.asarray(part, dtype=np.int64))
                    continue
                cur.execute(f"SELECT {self._column} FROM {self._table} "
                            f"WHERE {self._column} IN ({marks})", part)
                present.append(np.fromiter((row[0] for row in cur.fetchall()), dtype=np.int64))
        return np.concatenate(present) if present else np.zeros(0, dtype=np.int64)


def with_found_flags(chunks: Iterable[pa.Table],
                     conn: pymysql.connections.Connection) -> Iterator[pa.Table]:
    """Transactions chunks with `user_found` / `merchant_found` (1 or 0) appended, the columns
    `transform.transform_transactions` checks."""
    users, merchants = ExistingIds(conn, "user_id"), ExistingIds(conn, "merchant_id")
    for chunk in chunks:
        yield (chunk.append_column("user_found", [users.found(chunk.column("user_id"))])
               .append_column("merchant_found", [merchants.found(chunk.column("merchant_id"))]))
