"""Run statements on a chDB folder in a process of its own (chDB allows one process per folder,
so the bench never opens one itself) and print the last result as TSV.

    python bench/chdb_admin.py CHDB_PATH "SQL" ["SQL" ...]
"""

from __future__ import annotations

import sys


def main(path: str, statements: list[str]) -> None:
    from chdb import session

    sess = session.Session(path)
    try:
        result = None
        for sql in statements:
            result = sess.query(sql, "TSV")
        if result is not None:
            sys.stdout.write(str(result))
    finally:
        sess.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
