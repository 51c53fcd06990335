"""Deterministic time sources for the resilience tests.

Not mocks of a component: a clock is an input, like a seed. ``FakeClock.sleep`` advances the
clock by exactly the requested time and records it, so code that waits runs instantly and a
test can assert on every wait it made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None  # runs before the clock moves
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class FakeWallClock:
    """Aware datetimes that move only when told to."""

    def __init__(self, start: datetime):
        assert start.tzinfo is not None
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
