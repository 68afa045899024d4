"""The fault-injection seam of the kill tests: named points where a run SIGKILLs itself.

`arm(name)` (the command line does it from `Settings.kill_at`, the undocumented ETL_KILL_AT)
chooses one point; `fault_point(name)` there kills the process. Unarmed, every point is a
no-op and `around_facts` hands the facts stream through untouched, so production code carries
one call per point and no test logic. Points: after_dimensions, mid_insert (half of the first
facts chunk landed by an INSERT of its own), during_insert (the kill fires while the first
chunk is being sent), after_first_chunk, after_chunk_<N>, before_checkpoint,
after_checkpoint, cdc_after_first_batch, binlog_snapshot_chunk, binlog_before_save.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:  # the command line imports this module before it parses: keep it light
    import pyarrow as pa

log = logging.getLogger(__name__)

_armed_at = ""


def arm(name: str) -> None:
    global _armed_at
    _armed_at = name


def armed(name: str) -> bool:
    return bool(_armed_at) and _armed_at == name


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fault_point(name: str) -> None:
    """SIGKILL this process here when armed at `name`; send it SIGTERM or SIGINT when armed at
    `term:name` or `int:name` (the interruption tests: the run's own handler takes it)."""
    if armed(name):
        log.warning("fault point %s: killing myself", name)
        _kill()
    for prefix, signum in (("term:", signal.SIGTERM), ("int:", signal.SIGINT)):
        if armed(prefix + name):
            os.kill(os.getpid(), signum)


def around_facts(chunks: Iterator[pa.Table],
                 insert: Callable[[pa.Table], None]) -> Iterator[pa.Table]:
    """The facts stream with the kill points around its chunks (a pass-through when unarmed)."""
    if not _armed_at:
        yield from chunks
        return
    for n, facts in enumerate(chunks, start=1):
        if n == 1 and armed("mid_insert"):  # half a chunk lands, then the crash
            insert(facts.slice(0, facts.num_rows // 2))
            fault_point("mid_insert")
        if n == 1 and armed("during_insert"):  # the kill fires while the chunk is sent
            threading.Timer(0.005, _kill).start()
            yield facts
            time.sleep(60)  # if the insert beat the timer, die here: still before the checkpoint
        else:
            yield facts
        if n == 1:
            fault_point("after_first_chunk")
        fault_point(f"after_chunk_{n}")
