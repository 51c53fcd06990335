"""Retries with capped exponential backoff and full jitter that honour ``retry-after``.

Full jitter (a uniform draw between 0 and the exponential cap) spreads the retries of many
concurrent callers instead of having them hit a recovering server in lock-step. A server's
``retry-after`` is a floor: we never retry sooner than it asked. The random draws come from
a generator the policy owns, seeded on request, so a test sees the same delays every run.

Which errors are worth retrying is the caller's decision (a predicate): only the cascade knows
that a 529 or a connection reset is transient and a 400 is not.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from ai_assets.serving.resilience.deadline import Deadline, DeadlineExceeded, Sleep

T = TypeVar("T")

RetryCallback = Callable[[int, BaseException, float], None]
"""``on_retry(retry_number, error, delay)``, called before each sleep (retry_number from 1)."""


def backoff_cap(retry_number: int, base_delay: float, max_delay: float, multiplier: float = 2.0) -> float:
    """The upper end of the full-jitter range for the n-th retry (1-based): capped exponential."""
    try:
        return min(max_delay, base_delay * multiplier ** (retry_number - 1))
    except OverflowError:  # a huge retry number: long past any sensible max_delay
        return max_delay


def full_jitter(retry_number: int, base_delay: float, max_delay: float, rng: random.Random,
                multiplier: float = 2.0) -> float:
    """A uniform draw in [0, backoff_cap(...)]: many callers failing together do not retry together."""
    return rng.uniform(0.0, backoff_cap(retry_number, base_delay, max_delay, multiplier))


def _no_retry_after(error: BaseException) -> float | None:
    return None


class RetryPolicy:
    """How often and how long to retry one call.

    - ``max_attempts`` counts the first call: 1 means never retry.
    - The n-th retry waits a uniform draw in ``[0, min(max_delay, base_delay * multiplier**(n-1))]``.
    - If ``retry_after(error)`` gives a number, the wait is ``max(retry_after, that draw)``.
      A server asking for more than ``max_delay`` is not retried early: the policy gives up
      and re-raises, so the cascade can move to the next tier instead of being refused again.
    - With a ``deadline``, the policy never sleeps past it: if the next wait would not end
      before the deadline (leaving no time for the call) it raises :class:`DeadlineExceeded`
      (chained to the last error) at once.

    When it gives up for any reason other than the deadline, the last error itself is
    re-raised unchanged, so the caller sees what actually failed (429, timeout, ...).
    The policy is stateless between calls apart from its random generator, which is locked,
    so one instance can serve many threads.
    """

    def __init__(self, *, retryable: Callable[[BaseException], bool], max_attempts: int = 4,
                 base_delay: float = 0.5, multiplier: float = 2.0, max_delay: float = 30.0,
                 retry_after: Callable[[BaseException], float | None] = _no_retry_after,
                 seed: int | None = None, sleep: Sleep = time.sleep,
                 on_retry: RetryCallback | None = None):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0 or multiplier < 1:
            raise ValueError("delays must be non-negative and the multiplier at least 1")
        self.retryable = retryable
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.multiplier = multiplier
        self.max_delay = max_delay
        self.retry_after = retry_after
        self.on_retry = on_retry
        self._sleep = sleep
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()

    def backoff_cap(self, retry_number: int) -> float:
        """The upper end of the jitter range for the n-th retry (1-based)."""
        return backoff_cap(retry_number, self.base_delay, self.max_delay, self.multiplier)

    def backoff(self, retry_number: int) -> float:
        """A full-jitter draw for the n-th retry (1-based)."""
        with self._random_lock:
            return full_jitter(retry_number, self.base_delay, self.max_delay, self._random, self.multiplier)

    def delay(self, retry_number: int, error: BaseException) -> float | None:
        """The wait before the n-th retry after ``error``, or None if the server asks for more than max_delay."""
        server = self.retry_after(error)
        jitter = self.backoff(retry_number)
        if server is None:
            return jitter
        if server > self.max_delay:
            return None
        return max(server, jitter)

    def call(self, fn: Callable[[], T], *, deadline: Deadline | None = None) -> T:
        """Call ``fn()`` until it succeeds, retrying retryable errors as the policy allows."""
        attempt = 0
        last_error: Exception | None = None
        while True:
            if deadline is not None and deadline.expired:
                raise DeadlineExceeded(
                    "deadline passed before the first attempt" if attempt == 0
                    else f"deadline passed after {attempt} attempt(s); last error: {last_error!r}",
                    attempts=attempt, last_error=last_error) from last_error
            attempt += 1
            try:
                return fn()
            except Exception as error:
                last_error = error
                if attempt >= self.max_attempts or not self.retryable(error):
                    raise
                wait = self.delay(attempt, error)
                if wait is None:
                    raise
                if deadline is not None and wait >= deadline.remaining():
                    raise DeadlineExceeded(
                        f"giving up after {attempt} attempt(s): the next retry in {wait:.3f}s would pass "
                        f"the deadline ({deadline.remaining():.3f}s left); last error: {error!r}",
                        attempts=attempt, last_error=error) from error
                if self.on_retry is not None:
                    self.on_retry(attempt, error, wait)
            self._sleep(wait)


def parse_retry_after(value: str | float | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``retry-after`` header: delta-seconds or an HTTP date; None if absent or unreadable.

    A date in the past means "now" (0). ``now`` (aware, UTC) is injectable for tests.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value)) if math.isfinite(value) else None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
