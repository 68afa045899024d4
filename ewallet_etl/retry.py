"""Bounded retries with exponential backoff, for idempotent steps only."""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from ewallet_etl.core.errors import one_line

log = logging.getLogger(__name__)
T = TypeVar("T")


class TransientError(RuntimeError):
    """A failure worth retrying (a server unreachable or a connection dropped)."""


def with_retries(step: Callable[[], T], what: str, attempts: int, base_delay: float = 0.5) -> T:
    """Run `step`; on failure retry up to `attempts` more times (0.5 s, 1 s, 2 s, ... capped)."""
    for attempt in range(attempts + 1):
        try:
            return step()
        except TransientError as exc:
            if attempt == attempts:
                raise
            delay = min(base_delay * 2**attempt, 8.0)
            log.warning("%s failed (%s); retry %d/%d in %.1fs",
                        what, one_line(exc),
                        attempt + 1, attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
