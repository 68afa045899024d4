"""How an exception is shown in one log line or audit row."""

from __future__ import annotations

import signal


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the run stops where it is (a BaseException, like
    KeyboardInterrupt, so no `except Exception` swallows it) and exits 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def first_line(exc: BaseException) -> str:
    """The first line of the exception's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException, limit: int = 600) -> str:
    """The whole message on one line (a ClickHouse error is `Code: N.` then the reason on the
    next lines: the first line alone says nothing), whitespace collapsed, a server's stack
    trace dropped, cut at `limit`."""
    text = " ".join(str(exc).split("Stack trace:")[0].split())  # the server's trace: noise
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " [...]"


def outcome(exc: BaseException) -> str:
    """The audit status of a run that ended with `exc`: interrupted (a signal) or failed."""
    return "interrupted" if isinstance(exc, (Interrupted, KeyboardInterrupt)) else "failed"
