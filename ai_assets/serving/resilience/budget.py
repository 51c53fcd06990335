"""Daily and per-run spending limits for paid model calls: alert before, hard stop at the limit.

One :class:`Budget` per run. The *run* window is the Budget's lifetime; the *daily* window is
the UTC calendar day of an injected wall clock and resets at UTC midnight. What was already
spent today is not kept in the process: at the start of each day window (and on
:meth:`Budget.refresh`, or every ``refresh_seconds``) it is read back from the persistent
store through the ``spent_today(day)`` callable, so a restarted process or a second run
sees the same total. The store is the truth: call :meth:`Budget.record` / :meth:`commit` for
costs that the store will also hold, and a refresh replaces the local figure with the store's.

Hard stop: a call is allowed only if its estimated cost fits under every limit together with
what is spent and what other admitted calls have reserved but not yet settled. With
:meth:`Budget.reserve` / :meth:`Budget.commit`, concurrent callers therefore cannot overshoot
the limit by their combined estimates; with plain :meth:`check` + :meth:`record` (no
reservation) they can, by at most the calls in flight.

Alerts: at most once per window and level, ``on_alert`` receives a :class:`BudgetAlert`:
``WARNING`` when spend reaches the warning fraction (default 80%), ``EXHAUSTED`` when paid
calls start being refused, that is when spend reaches the limit or the first call that does
not fit in what is left is denied (the cascade degrades to the local tier from then on).
The callback runs outside the lock.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum

from ai_assets.serving.resilience.pricing import Money, to_money


def utc_now() -> datetime:
    return datetime.now(UTC)


class BudgetScope(str, Enum):
    DAILY = "daily"
    RUN = "run"


class AlertLevel(str, Enum):
    WARNING = "warning"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class BudgetAlert:
    scope: BudgetScope
    level: AlertLevel
    spent: Decimal
    limit: Decimal
    window: str  # the UTC day (ISO) for daily, "run" for the run

    @property
    def message(self) -> str:
        share = (self.spent / self.limit * 100) if self.limit else Decimal(100)
        return (f"{self.scope.value} model budget {self.level.value}: ${self.spent} of ${self.limit} "
                f"({share:.0f}%) spent in window {self.window}")


@dataclass(frozen=True)
class Reservation:
    """An admitted call's estimated cost, held against the limits until commit or cancel."""

    id: int
    amount: Decimal
    day: date


@dataclass(frozen=True)
class BudgetDecision:
    """``allowed`` (also the truth value), and when refused the ``scope`` and a readable ``reason``."""

    allowed: bool
    reason: str | None = None
    scope: BudgetScope | None = None
    reservation: Reservation | None = None

    def __bool__(self) -> bool:
        return self.allowed


class Budget:
    """Daily and per-run limits in USD (``None`` = no limit for that window)."""

    def __init__(self, *, daily_limit: Money | None = None, run_limit: Money | None = None,
                 warn_fraction: Money = Decimal("0.8"),
                 spent_today: Callable[[date], Money] | None = None,
                 refresh_seconds: float | None = None,
                 now: Callable[[], datetime] = utc_now,
                 on_alert: Callable[[BudgetAlert], None] | None = None):
        self.daily_limit = None if daily_limit is None else to_money(daily_limit)
        self.run_limit = None if run_limit is None else to_money(run_limit)
        for limit in (self.daily_limit, self.run_limit):
            if limit is not None and limit < 0:
                raise ValueError("a budget limit cannot be negative")
        self.warn_fraction = to_money(warn_fraction)
        if not 0 < self.warn_fraction <= 1:
            raise ValueError("warn_fraction is a fraction in (0, 1]")
        self._spent_today = spent_today
        self._refresh_seconds = refresh_seconds
        self._now = now
        self._on_alert = on_alert
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._day: date | None = None
        self._loaded_at: datetime | None = None
        self._daily_spent = Decimal(0)
        self._run_spent = Decimal(0)
        self._pending: dict[int, Reservation] = {}
        self._alerted: set[tuple[BudgetScope, AlertLevel, str]] = set()

    # --- windows --------------------------------------------------------------------------

    def _load(self, day: date, now: datetime) -> None:
        """Under the lock: today's spend from the store (0 without one)."""
        self._daily_spent = Decimal(0) if self._spent_today is None else to_money(self._spent_today(day))
        self._loaded_at = now

    def _roll(self, pending_alerts: list[BudgetAlert], force_load: bool = False) -> None:
        """Under the lock: start a new day window at UTC midnight, or reload from the store when due."""
        now = self._now()
        if now.tzinfo is None:
            raise ValueError("the budget's wall clock must return timezone-aware datetimes")
        today = now.astimezone(UTC).date()
        if today != self._day:
            self._day = today
            # Reservations from yesterday's window no longer hold against today's limit.
            self._pending = {rid: r for rid, r in self._pending.items() if r.day == today}
            self._load(today, now)
        elif force_load or (self._refresh_seconds is not None and self._loaded_at is not None
                            and (now - self._loaded_at).total_seconds() >= self._refresh_seconds):
            self._load(today, now)
        self._evaluate(pending_alerts)

    def _windows(self) -> list[tuple[BudgetScope, Decimal, Decimal, str]]:
        """Under the lock: (scope, spent, limit, window key) for each window with a limit."""
        windows = []
        if self.daily_limit is not None:
            windows.append((BudgetScope.DAILY, self._daily_spent, self.daily_limit, self._day.isoformat()))
        if self.run_limit is not None:
            windows.append((BudgetScope.RUN, self._run_spent, self.run_limit, "run"))
        return windows

    def _alert(self, scope: BudgetScope, level: AlertLevel, spent: Decimal, limit: Decimal, window: str,
               pending_alerts: list[BudgetAlert]) -> None:
        key = (scope, level, window)
        if key not in self._alerted:
            self._alerted.add(key)
            pending_alerts.append(BudgetAlert(scope, level, spent, limit, window))

    def _evaluate(self, pending_alerts: list[BudgetAlert]) -> None:
        for scope, spent, limit, window in self._windows():
            if spent >= limit * self.warn_fraction:
                self._alert(scope, AlertLevel.WARNING, spent, limit, window, pending_alerts)
            if spent >= limit:
                self._alert(scope, AlertLevel.EXHAUSTED, spent, limit, window, pending_alerts)

    def _emit(self, pending_alerts: list[BudgetAlert]) -> None:
        if self._on_alert is not None:
            for alert in pending_alerts:
                self._on_alert(alert)

    # --- decisions ------------------------------------------------------------------------

    def _decide(self, estimated: Decimal, pending_alerts: list[BudgetAlert]) -> BudgetDecision:
        """Under the lock, after _roll."""
        if estimated < 0:
            raise ValueError("an estimated cost cannot be negative")
        in_flight = sum((r.amount for r in self._pending.values()), Decimal(0))
        for scope, spent, limit, window in self._windows():
            if spent >= limit or spent + in_flight + estimated > limit:
                self._alert(scope, AlertLevel.EXHAUSTED, spent, limit, window, pending_alerts)
                return BudgetDecision(False, scope=scope, reason=(
                    f"{scope.value} budget ${limit} reached: spent ${spent}, in flight ${in_flight}, "
                    f"this call ~${estimated}"))
        return BudgetDecision(True)

    def check(self, estimated_cost: Money) -> BudgetDecision:
        """Would a call of this estimated cost fit under every limit? Changes nothing but alerts."""
        alerts: list[BudgetAlert] = []
        with self._lock:
            self._roll(alerts)
            decision = self._decide(to_money(estimated_cost), alerts)
        self._emit(alerts)
        return decision

    def reserve(self, estimated_cost: Money) -> BudgetDecision:
        """Like :meth:`check`, and if allowed hold the estimate until :meth:`commit` or :meth:`cancel`."""
        alerts: list[BudgetAlert] = []
        with self._lock:
            self._roll(alerts)
            estimated = to_money(estimated_cost)
            decision = self._decide(estimated, alerts)
            if decision.allowed:
                reservation = Reservation(next(self._ids), estimated, self._day)
                self._pending[reservation.id] = reservation
                decision = BudgetDecision(True, reservation=reservation)
        self._emit(alerts)
        return decision

    def commit(self, reservation: Reservation, actual_cost: Money) -> None:
        """The reserved call finished and cost ``actual_cost``: release the hold, record the cost."""
        alerts: list[BudgetAlert] = []
        with self._lock:
            self._pending.pop(reservation.id, None)
            self._add(to_money(actual_cost), alerts)
        self._emit(alerts)

    def cancel(self, reservation: Reservation) -> None:
        """The reserved call was not made (or cost nothing): release the hold."""
        with self._lock:
            self._pending.pop(reservation.id, None)

    def record(self, cost: Money) -> None:
        """Add the cost of a finished call to both windows."""
        alerts: list[BudgetAlert] = []
        with self._lock:
            self._add(to_money(cost), alerts)
        self._emit(alerts)

    def _add(self, cost: Decimal, alerts: list[BudgetAlert]) -> None:
        if cost < 0:
            raise ValueError("a cost cannot be negative")
        self._roll(alerts)
        self._daily_spent += cost
        self._run_spent += cost
        self._evaluate(alerts)

    def refresh(self) -> None:
        """Re-read today's spend from the store now (e.g. at the start of a run)."""
        alerts: list[BudgetAlert] = []
        with self._lock:
            self._roll(alerts, force_load=True)
        self._emit(alerts)

    # --- figures --------------------------------------------------------------------------

    @property
    def daily_spent(self) -> Decimal:
        alerts: list[BudgetAlert] = []
        with self._lock:
            self._roll(alerts)
            spent = self._daily_spent
        self._emit(alerts)
        return spent

    @property
    def run_spent(self) -> Decimal:
        with self._lock:
            return self._run_spent

    @property
    def in_flight(self) -> Decimal:
        with self._lock:
            return sum((r.amount for r in self._pending.values()), Decimal(0))
