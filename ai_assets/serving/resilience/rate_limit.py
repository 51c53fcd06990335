"""Client-side rate limits (requests and tokens per minute) and bounded concurrency.

The model API enforces limits in requests per minute *and* tokens per minute; exceeding
either is answered with 429. Staying under both on our side is cheaper than being told, so
:class:`RateLimiter` admits a call only when both token buckets have room.

How it works: a reservation scheduler over two token buckets. Each caller, under a lock,
computes the earliest time both buckets (and any server-imposed pause) admit it, debits the
buckets *at that time*, and then sleeps outside the lock until then. Because the buckets are
debited at the admission times themselves, in admission order, the admitted sequence is an
exact token-bucket sequence: over any window of ``w`` seconds at most
``capacity + rate * w`` is admitted, however many threads call at once. Callers are served
first come, first served (a large request cannot be starved by a stream of small ones),
and each waits with a single sleep instead of polling.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ai_assets.serving.resilience.deadline import Clock, Sleep

_EPSILON = 1e-9


@dataclass
class _Bucket:
    """A token bucket whose state is known at ``stamp``, the latest admission (possibly in the future)."""

    rate: float  # per second
    capacity: float
    level: float
    stamp: float

    def level_at(self, t: float) -> float:
        return min(self.capacity, self.level + self.rate * (t - self.stamp))

    def ready_at(self, t0: float, amount: float) -> float:
        """Earliest time >= ``t0`` (itself >= ``stamp``) at which ``amount`` can be taken.

        An amount above the capacity could never fit; it is admitted once the bucket is full
        and leaves the bucket in debt, which later callers wait out, so the long-run rate
        still holds.
        """
        need = min(amount, self.capacity)
        level = self.level_at(t0)
        if level >= need - _EPSILON * max(1.0, need):  # float refill may land a hair short
            return t0
        return t0 + (need - level) / self.rate

    def take(self, t: float, amount: float) -> None:
        self.level = self.level_at(t) - amount
        self.stamp = t


class RateLimiter:
    """Admits calls under a requests-per-minute and a tokens-per-minute limit (both must admit).

    ``None`` for a limit means unlimited. ``burst_seconds`` sizes each bucket: it holds that
    many seconds' worth of its rate (at least one request), so the limiter releases calls
    smoothly rather than a whole minute's allowance at once. A server enforcing the same limit
    with its own bucket accepts this only when the client's burst is smaller than the
    server's: requests arrive a little after the client admits them, and with equal buckets
    the server's runs empty a moment before the client's (measured: benchmarks/serving.py).

    ``tokens`` is the caller's estimate for the call (prompt plus maximum output); when the
    real usage is known, :meth:`settle` gives back (or takes) the difference.
    """

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 *, burst_seconds: float = 1.0, clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        if burst_seconds <= 0:
            raise ValueError("burst_seconds must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = self._bucket(requests_per_minute, burst_seconds, now, minimum=1.0)
        self._tokens = self._bucket(tokens_per_minute, burst_seconds, now, minimum=0.0)
        self._paused_until = -math.inf
        self.admitted = 0
        """Calls admitted so far."""
        self.tokens_admitted = 0
        """Estimated tokens of the admitted calls (before :meth:`settle`)."""
        self.timed_out = 0
        """Calls that gave up waiting (``acquire`` returned False)."""
        self.penalties = 0
        """Server pauses received through :meth:`penalize`."""

    @staticmethod
    def _bucket(per_minute: float | None, burst_seconds: float, now: float, minimum: float) -> _Bucket | None:
        if per_minute is None:
            return None
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute!r}")
        rate = per_minute / 60.0
        capacity = max(rate * burst_seconds, minimum)
        return _Bucket(rate=rate, capacity=capacity, level=capacity, stamp=now)

    # --- admission ------------------------------------------------------------------------

    def _reserve(self, tokens: float, now: float, max_wait: float) -> float | None:
        """Under the lock: the admission time, with both buckets debited, or None if later than max_wait."""
        if tokens < 0:
            raise ValueError(f"tokens must be non-negative, got {tokens!r}")
        demands = [(b, amount) for b, amount in ((self._requests, 1.0), (self._tokens, float(tokens)))
                   if b is not None]
        admit_at = max(now, self._paused_until)
        for bucket, amount in demands:
            admit_at = max(admit_at, bucket.ready_at(max(now, bucket.stamp), amount))
        if admit_at - now > max_wait:
            return None
        for bucket, amount in demands:
            bucket.take(admit_at, amount)
        return admit_at

    def try_acquire(self, tokens: float = 0) -> bool:
        """Admit now, or return False without waiting and without using any allowance."""
        with self._lock:
            admitted = self._reserve(tokens, self._clock(), 0.0) is not None
            if admitted:
                self.admitted += 1
                self.tokens_admitted += tokens
            return admitted

    def acquire(self, tokens: float = 0, timeout: float | None = None) -> bool:
        """Block until admitted (True) or until waiting would exceed ``timeout`` seconds (False).

        A caller that cannot be admitted within ``timeout`` returns False at once instead of
        sleeping and failing later. A server pause (:meth:`penalize`) that arrives while a
        caller waits extends its wait; if that pushes it past ``timeout`` it returns False and
        its reserved allowance is not given back (conservative: the server is overloaded).
        """
        with self._lock:
            start = self._clock()  # read under the lock: reservations are made in clock order
            give_up_at = math.inf if timeout is None else start + timeout
            admit_at = self._reserve(tokens, start, math.inf if timeout is None else timeout)
            if admit_at is None:
                self.timed_out += 1
                return False
        while True:
            now = self._clock()
            with self._lock:
                wake_at = max(admit_at, self._paused_until)
                if wake_at <= now:
                    self.admitted += 1
                    self.tokens_admitted += tokens
                    return True
                if wake_at > give_up_at:
                    self.timed_out += 1
                    return False
            self._sleep(wake_at - now)

    # --- feedback from the server ---------------------------------------------------------

    def penalize(self, retry_after_seconds: float) -> None:
        """The server answered 429 with ``retry-after``: pause every caller until then.

        Waiting callers sleep on past the pause; new callers are scheduled after it. Both
        buckets restart empty at the end of the pause, so traffic resumes at the configured
        rate instead of bursting a full bucket into a server that has just refused us.
        A shorter pause never shortens a longer one already in force.
        """
        if retry_after_seconds < 0 or math.isnan(retry_after_seconds):
            raise ValueError(f"retry_after_seconds must be non-negative, got {retry_after_seconds!r}")
        with self._lock:
            until = self._clock() + retry_after_seconds
            self.penalties += 1
            if until <= self._paused_until:
                return
            self._paused_until = until
            for bucket in (self._requests, self._tokens):
                if bucket is not None and bucket.stamp < until:
                    bucket.level = min(0.0, bucket.level_at(until))
                    bucket.stamp = until

    def settle(self, reserved_tokens: float, used_tokens: float) -> None:
        """Correct the token bucket once a call's real usage is known.

        Callers reserve an estimate (prompt plus the maximum output); an overestimate is given
        back to the bucket (never beyond its capacity), an underestimate is taken as debt.
        """
        if self._tokens is None:
            return
        with self._lock:
            bucket = self._tokens
            bucket.level = min(bucket.capacity, bucket.level + (reserved_tokens - used_tokens))

    @property
    def paused_for(self) -> float:
        """Seconds left of the current server pause (0 when none)."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())


class ConcurrencyTimeout(TimeoutError):
    """No concurrency slot became free within the timeout."""


class ConcurrencyLimit:
    """At most ``max_in_flight`` calls at once, with counters for metrics.

    A bounded semaphore that also reports how many calls are in flight and the most ever
    observed, so tests and benchmarks can prove the bound held. Waiting uses the OS
    condition variable (real time): it is not a schedule to test, only a bound.
    """

    def __init__(self, max_in_flight: int):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight!r}")
        self.limit = max_in_flight
        self._cond = threading.Condition()
        self._in_flight = 0
        self._max_observed = 0

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds (forever if None); False if none freed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight < self.limit, timeout):
                return False
            self._in_flight += 1
            self._max_observed = max(self._max_observed, self._in_flight)
            return True

    def release(self) -> None:
        with self._cond:
            if self._in_flight == 0:
                raise RuntimeError("release() without a matching acquire()")
            self._in_flight -= 1
            self._cond.notify()

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[None]:
        """``with limit.slot(timeout=5): call()`` — raises :class:`ConcurrencyTimeout` if no slot frees."""
        if not self.acquire(timeout):
            raise ConcurrencyTimeout(f"no free slot of {self.limit} within {timeout}s")
        try:
            yield
        finally:
            self.release()

    def __enter__(self) -> ConcurrencyLimit:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @property
    def max_observed(self) -> int:
        with self._cond:
            return self._max_observed
