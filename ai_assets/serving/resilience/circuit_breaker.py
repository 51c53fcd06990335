"""A circuit breaker per model tier: stop calling a failing tier, probe it again after a cooldown.

Trip rule, chosen: **N consecutive failures** open the circuit. A failure *rate* over a
window needs a minimum volume to mean anything and is noisy at the low call counts a single
tier sees when the cascade sends it only the uncertain messages; an outage, which is what
the breaker is for, shows up as an unbroken run of failures at any volume. Any success
resets the run.

States::

    CLOSED --N consecutive failures--> OPEN --cooldown elapsed--> HALF_OPEN
    HALF_OPEN --probe succeeds--> CLOSED (cooldown back to its base)
    HALF_OPEN --probe fails-----> OPEN   (cooldown * multiplier, capped)

OPEN rejects at once with :class:`CircuitOpen` (no network wait), so the cascade falls
through to the next tier immediately. HALF_OPEN admits at most ``half_open_max_calls``
probes at a time; other callers are rejected until a probe reports back.

Each admitted call holds a :class:`Permit` stamped with the breaker's generation (bumped at
every transition). An outcome reported with a permit from an earlier generation is counted
but does not move the state: a slow call that started before the circuit opened cannot
close it, and a straggler's failure cannot re-open a circuit a probe has just closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from ai_assets.serving.resilience.deadline import Clock

T = TypeVar("T")


class CircuitState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The tier's circuit is open (or its probe slots are taken): the call was not made."""

    def __init__(self, name: str, retry_in: float):
        super().__init__(f"circuit {name!r} is open; next probe in {retry_in:.1f}s")
        self.name = name
        self.retry_in = retry_in


@dataclass(frozen=True)
class Permit:
    """Proof that a call was admitted; hand it back with the outcome."""

    generation: int
    probe: bool


@dataclass(frozen=True)
class Transition:
    """One state change, for alerts and metrics."""

    name: str
    old: CircuitState
    new: CircuitState
    at: float
    cooldown: float  # the cooldown in force after the change (relevant when new is OPEN)


@dataclass(frozen=True)
class CircuitStats:
    state: CircuitState
    consecutive_failures: int
    successes: int
    failures: int
    rejected: int
    opened: int  # times the circuit has opened (from CLOSED or HALF_OPEN)
    cooldown: float


def _always(error: BaseException) -> bool:
    return True


class CircuitBreaker:
    """Closed/open/half-open breaker for one tier; thread-safe, time from an injected clock.

    ``on_transition`` is called with each :class:`Transition` after the breaker's lock is
    released, so it may safely read the breaker (or log, or emit a metric).
    """

    def __init__(self, name: str, *, failure_threshold: int = 5, cooldown: float = 30.0,
                 half_open_max_calls: int = 1, cooldown_multiplier: float = 2.0,
                 max_cooldown: float = 300.0, clock: Clock = time.monotonic,
                 on_transition: Callable[[Transition], None] | None = None):
        if failure_threshold < 1 or half_open_max_calls < 1:
            raise ValueError("failure_threshold and half_open_max_calls must be at least 1")
        if cooldown < 0 or cooldown_multiplier < 1 or max_cooldown < cooldown:
            raise ValueError("need 0 <= cooldown <= max_cooldown and cooldown_multiplier >= 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.base_cooldown = cooldown
        self.half_open_max_calls = half_open_max_calls
        self.cooldown_multiplier = cooldown_multiplier
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._consecutive_failures = 0
        self._cooldown = cooldown
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._successes = 0
        self._failures = 0
        self._rejected = 0
        self._opened = 0

    # --- state ----------------------------------------------------------------------------

    def _move(self, new: CircuitState, now: float, events: list[Transition]) -> None:
        """Under the lock."""
        old = self._state
        self._state = new
        self._generation += 1
        self._probes_in_flight = 0
        if new is CircuitState.OPEN:
            self._opened_at = now
            self._opened += 1
        if new is CircuitState.CLOSED:
            self._consecutive_failures = 0
        events.append(Transition(self.name, old, new, now, self._cooldown))

    def _refresh(self, now: float, events: list[Transition]) -> None:
        """Under the lock: OPEN becomes HALF_OPEN once the cooldown has passed."""
        if self._state is CircuitState.OPEN and now >= self._opened_at + self._cooldown:
            self._move(CircuitState.HALF_OPEN, now, events)

    def _emit(self, events: list[Transition]) -> None:
        if self._on_transition is not None:
            for event in events:
                self._on_transition(event)

    @property
    def state(self) -> CircuitState:
        events: list[Transition] = []
        with self._lock:
            self._refresh(self._clock(), events)
            state = self._state
        self._emit(events)
        return state

    def stats(self) -> CircuitStats:
        events: list[Transition] = []
        with self._lock:
            self._refresh(self._clock(), events)
            stats = CircuitStats(self._state, self._consecutive_failures, self._successes, self._failures,
                                 self._rejected, self._opened, self._cooldown)
        self._emit(events)
        return stats

    # --- calls ----------------------------------------------------------------------------

    def allow(self) -> Permit:
        """Admit a call or raise :class:`CircuitOpen`. Report the outcome with the permit."""
        events: list[Transition] = []
        try:
            with self._lock:
                now = self._clock()
                self._refresh(now, events)
                if self._state is CircuitState.CLOSED:
                    return Permit(self._generation, probe=False)
                if self._state is CircuitState.HALF_OPEN and self._probes_in_flight < self.half_open_max_calls:
                    self._probes_in_flight += 1
                    return Permit(self._generation, probe=True)
                self._rejected += 1
                retry_in = max(0.0, self._opened_at + self._cooldown - now) \
                    if self._state is CircuitState.OPEN else 0.0
                raise CircuitOpen(self.name, retry_in)
        finally:
            self._emit(events)

    def record_success(self, permit: Permit) -> None:
        events: list[Transition] = []
        with self._lock:
            self._successes += 1
            if permit.generation == self._generation:
                self._consecutive_failures = 0
                if self._state is CircuitState.HALF_OPEN:
                    self._cooldown = self.base_cooldown
                    self._move(CircuitState.CLOSED, self._clock(), events)
        self._emit(events)

    def record_failure(self, permit: Permit) -> None:
        events: list[Transition] = []
        with self._lock:
            self._failures += 1
            if permit.generation == self._generation:
                now = self._clock()
                if self._state is CircuitState.HALF_OPEN:
                    self._cooldown = min(self.max_cooldown, self._cooldown * self.cooldown_multiplier)
                    self._move(CircuitState.OPEN, now, events)
                elif self._state is CircuitState.CLOSED:
                    self._consecutive_failures += 1
                    if self._consecutive_failures >= self.failure_threshold:
                        self._move(CircuitState.OPEN, now, events)
        self._emit(events)

    def release(self, permit: Permit) -> None:
        """The call ended with an outcome that says nothing about the tier (e.g. our own 400, a cancel).

        Frees a probe slot without changing the state or the failure run.
        """
        with self._lock:
            if permit.probe and permit.generation == self._generation and self._probes_in_flight > 0:
                self._probes_in_flight -= 1

    @contextmanager
    def guard(self, *, is_failure: Callable[[BaseException], bool] = _always) -> Iterator[Permit]:
        """``with breaker.guard(): call()`` — an exception counts as a failure if ``is_failure`` says so."""
        permit = self.allow()
        try:
            yield permit
        except BaseException as error:
            if isinstance(error, Exception) and is_failure(error):
                self.record_failure(permit)
            else:
                self.release(permit)
            raise
        self.record_success(permit)

    def call(self, fn: Callable[[], T], *, is_failure: Callable[[BaseException], bool] = _always) -> T:
        """Call ``fn()`` through the breaker (raises :class:`CircuitOpen` without calling when open)."""
        with self.guard(is_failure=is_failure):
            return fn()
