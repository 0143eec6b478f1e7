"""Progress lines of the comparison: an optional callback and elapsed / remaining time."""

from __future__ import annotations

import time
from collections.abc import Callable

Progress = Callable[[str], None] | None


def say(progress: Progress, message: str) -> None:
    """Pass `message` to the callback, if there is one."""
    if progress is not None:
        progress(message)


def eta(done: int, total: int, start: float) -> str:
    """'E s elapsed, ~R s left' after `done` of `total` items started at perf_counter() `start`."""
    elapsed = time.perf_counter() - start
    remaining = elapsed / done * (total - done)
    return f"{elapsed:.0f} s elapsed, ~{remaining:.0f} s left"
