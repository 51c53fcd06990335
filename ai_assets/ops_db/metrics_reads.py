"""Reads for the layer-4 metrics (`pipeline_metrics`, `cost_report`, `business_metrics`).

Read-only, parameterised SQLAlchemy selects over tables other stores write: the LLM usage
ledger, the action ledger and the outbox. Two clocks matter and are kept apart:

- `partition`: the day whose messages a row serves. Per-partition figures (latency, errors,
  cost per 1,000 messages, time to action) select by it, so a backfill of an old day is
  measured against that day's messages.
- `at`: the wall-clock time of the call. Budgets are windows of `at` (that is what
  `Budget.spent_today` enforces), so spend against the daily and monthly budgets selects by it.

Windows are half-open, [since, until), in UTC, as in `usage.py`. Money stays `Decimal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, case, func, or_, select

from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import Action, LlmUsage, OutboxMessage
from ai_assets.ops_db.types import as_money, as_utc

ZERO = as_money(0)


@dataclass(frozen=True)
class UsageCall:
    """One usage-ledger row: one logical model call (its retries included), cache hits at zero cost."""

    id: int
    tier: str
    model: str
    latency_ms: int
    cost_usd: Decimal
    cache_hit: bool
    outcome: str  # "ok" or the error kind (rate_limited, circuit_open, deadline, ...)
    batch: bool
    input_tokens: int
    output_tokens: int
    run_id: str | None
    partition: str | None
    at: datetime


@dataclass(frozen=True)
class SpendLine:
    """Calls and spend of one (tier, model) in a window."""

    tier: str
    model: str
    calls: int
    cache_hits: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class ActionTime:
    """When the action ledger recorded a message's outcome (the case write and the outbox rows
    are in the same transaction, so this is when the action was carried out)."""

    message_id: str
    decision: str
    action: str
    outcome: str
    at: datetime


@dataclass(frozen=True)
class OutboxTime:
    """One outbox row's delivery state and times."""

    message_id: str
    kind: str  # email | webhook
    status: str  # pending | delivered | dead
    attempts: int
    created_at: datetime
    delivered_at: datetime | None


def day_window(day: date) -> tuple[datetime, datetime]:
    """[00:00, next 00:00) UTC of `day`."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


class MetricsReads:
    """The selects the metrics assets need, on one database."""

    def __init__(self, sessions: Sessions):
        self._sessions = sessions

    def usage_calls(self, partition: str) -> list[UsageCall]:
        """Every usage row recorded for `partition`, in the order they were written (id), which
        is what the circuit-breaker derivation in `monitoring.pipeline_metrics` needs."""
        query = select(LlmUsage).where(LlmUsage.partition == partition).order_by(LlmUsage.id)
        with self._sessions.read() as s:
            return [UsageCall(id=u.id, tier=u.tier, model=u.model, latency_ms=int(u.latency_ms),
                              cost_usd=u.cost_usd, cache_hit=bool(u.cache_hit), outcome=u.outcome,
                              batch=bool(u.batch), input_tokens=int(u.input_tokens),
                              output_tokens=int(u.output_tokens), run_id=u.run_id, partition=u.partition,
                              at=u.at)
                    for u in s.scalars(query)]

    def spend_lines(self, since: datetime | None = None, until: datetime | None = None, *,
                    partition: str | None = None, exclude_run_prefix: str | None = None,
                    only_run_prefix: str | None = None) -> list[SpendLine]:
        """Calls and spend per (tier, model), sorted, for calls at in [since, until) and/or of one
        partition. `exclude_run_prefix` leaves out runs whose id starts with it (as the live
        budget leaves out evaluations); `only_run_prefix` keeps only those."""
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(LlmUsage.at >= as_utc(since, "since"))
        if until is not None:
            conditions.append(LlmUsage.at < as_utc(until, "until"))
        if partition is not None:
            conditions.append(LlmUsage.partition == partition)
        if exclude_run_prefix is not None:
            conditions.append(or_(LlmUsage.run_id.is_(None),
                                  ~LlmUsage.run_id.startswith(exclude_run_prefix, autoescape=True)))
        if only_run_prefix is not None:
            conditions.append(LlmUsage.run_id.startswith(only_run_prefix, autoescape=True))
        # SUM over a boolean is not portable (PostgreSQL refuses it): count with CASE.
        query = (select(LlmUsage.tier, LlmUsage.model, func.count(),
                        func.sum(case((LlmUsage.cache_hit.is_(True), 1), else_=0)),
                        func.sum(case((LlmUsage.outcome != "ok", 1), else_=0)),
                        func.sum(LlmUsage.input_tokens), func.sum(LlmUsage.output_tokens),
                        func.sum(LlmUsage.cost_usd))
                 .where(*conditions)
                 .group_by(LlmUsage.tier, LlmUsage.model)
                 .order_by(LlmUsage.tier, LlmUsage.model))
        with self._sessions.read() as s:
            return [SpendLine(tier, model, int(calls), int(hits or 0), int(errors or 0), int(tokens_in or 0),
                              int(tokens_out or 0), cost if cost is not None else ZERO)
                    for tier, model, calls, hits, errors, tokens_in, tokens_out, cost in s.execute(query)]

    def daily_spend(self, first_day: date, last_day: date, *,
                    exclude_run_prefix: str | None = None) -> dict[date, list[SpendLine]]:
        """Spend lines of every UTC day from `first_day` to `last_day` inclusive (days without a
        call have an empty list): the series the month forecast is made of. One grouped select
        per day keeps the day boundary exact on both dialects (no date functions)."""
        if last_day < first_day:
            raise ValueError(f"last_day {last_day} is before first_day {first_day}")
        out: dict[date, list[SpendLine]] = {}
        day = first_day
        while day <= last_day:
            out[day] = self.spend_lines(*day_window(day), exclude_run_prefix=exclude_run_prefix)
            day += timedelta(days=1)
        return out

    def action_times(self, partition: str) -> list[ActionTime]:
        """The action-ledger rows written by runs of `partition`, by message id then id. A
        re-delivered message already done in another partition has no row here."""
        query = (select(Action.message_id, Action.decision, Action.action, Action.outcome, Action.at)
                 .where(Action.partition == partition).order_by(Action.message_id, Action.id))
        with self._sessions.read() as s:
            return [ActionTime(*row) for row in s.execute(query)]

    def outbox_times(self, partition: str) -> list[OutboxTime]:
        """The outbox rows of `partition` with their delivery state, by message id then id."""
        query = (select(OutboxMessage.message_id, OutboxMessage.kind, OutboxMessage.status,
                        OutboxMessage.attempts, OutboxMessage.created_at, OutboxMessage.delivered_at)
                 .where(OutboxMessage.partition == partition)
                 .order_by(OutboxMessage.message_id, OutboxMessage.id))
        with self._sessions.read() as s:
            return [OutboxTime(m, k, st, int(a), c, d) for m, k, st, a, c, d in s.execute(query)]


__all__ = ["ActionTime", "MetricsReads", "OutboxTime", "SpendLine", "UsageCall", "day_window"]
