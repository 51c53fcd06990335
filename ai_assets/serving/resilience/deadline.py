"""A latency budget with an absolute end, and the clock/sleep types the resilience code injects.

Every time-dependent class in the model cascade takes its time source as a plain callable
(monotonic seconds) and, where it waits, a sleep function. Production passes
``time.monotonic`` and ``time.sleep``; tests pass a fake clock whose ``sleep`` advances the
clock, so waiting code runs deterministically and instantly.

A :class:`Deadline` is an *absolute* point on that clock rather than a duration, so it can be
handed down through retries, rate-limit waits and per-call timeouts and every layer agrees on
how much time is left without adding up elapsed times itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic`` in production)."""

Sleep = Callable[[float], None]
"""Blocks for the given seconds (``time.sleep`` in production)."""


class DeadlineExceeded(TimeoutError):
    """The latency budget ran out, or the next wait would have run past it.

    ``attempts`` is how many calls were made before giving up (0 when the deadline had
    already passed), ``last_error`` the failure of the last attempt, if any. The cascade
    routes the remaining messages of a partition to the local tier when it sees this.
    """

    def __init__(self, message: str, *, attempts: int = 0, last_error: BaseException | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error


class Deadline:
    """A per-partition (or per-call) latency budget that ends at a fixed point in time.

    ``Deadline(30)`` ends 30 s after construction; ``Deadline(None)`` never ends, so callers
    can always pass a deadline instead of special-casing "no limit".
    """

    def __init__(self, seconds: float | None, clock: Clock = time.monotonic):
        if seconds is not None and (math.isnan(seconds) or seconds < 0):
            raise ValueError(f"a deadline needs a non-negative number of seconds, got {seconds!r}")
        self._clock = clock
        self.at: float = math.inf if seconds is None else clock() + seconds
        """The absolute end on ``clock`` (``inf`` for no deadline)."""

    @classmethod
    def never(cls, clock: Clock = time.monotonic) -> Deadline:
        return cls(None, clock)

    def remaining(self) -> float:
        """Seconds left, never negative; ``inf`` for no deadline."""
        return max(0.0, self.at - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self.at

    def cap(self, timeout: float | None) -> float:
        """The shorter of ``timeout`` and the time left: a per-call timeout that respects the budget."""
        remaining = self.remaining()
        return remaining if timeout is None else min(timeout, remaining)

    def check(self, what: str = "operation") -> None:
        """Raise :class:`DeadlineExceeded` if the budget is spent."""
        if self.expired:
            raise DeadlineExceeded(f"deadline passed before {what}")

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"
