"""LLM usage: one row per model call, and the sums budgets and reports are made of.

Costs are exact `Decimal` dollars (see `ai_assets.ops_db.types.Money`); windows are
half-open, [since, until), in UTC, so consecutive windows never count a call twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, insert, or_, select
from sqlalchemy.sql import ColumnElement

from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import LlmUsage
from ai_assets.ops_db.types import as_money, as_utc, utcnow

ZERO = as_money(0)
CHUNK = 500


@dataclass(frozen=True)
class UsageEntry:
    """One model call: what `UsageLedger.record_many` takes."""

    tier: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0
    cost_usd: Decimal | int | str = ZERO
    cache_hit: bool = False
    outcome: str = "ok"  # "ok" or the error kind (timeout, rate_limited, overloaded, ...)
    batch: bool = False
    run_id: str | None = None
    partition: str | None = None
    at: datetime | None = None  # default: now (UTC)

    def row(self, now: datetime) -> dict:
        if not self.tier or not self.model or not self.outcome:
            raise ValueError("tier, model and outcome are required")
        if min(self.input_tokens, self.output_tokens, self.latency_ms) < 0:
            raise ValueError("tokens and latency cannot be negative")
        cost = as_money(self.cost_usd)
        if cost < 0:
            raise ValueError(f"cost cannot be negative, got {cost}")
        return dict(tier=self.tier, model=self.model, input_tokens=int(self.input_tokens),
                    output_tokens=int(self.output_tokens), latency_ms=int(round(self.latency_ms)),
                    cost_usd=cost, cache_hit=bool(self.cache_hit), outcome=self.outcome,
                    batch=bool(self.batch), run_id=self.run_id, partition=self.partition,
                    at=as_utc(self.at, "at") if self.at is not None else now)


@dataclass
class TierUsage:
    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    batch_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = ZERO

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.calls if self.calls else 0.0


@dataclass
class UsageSummary(TierUsage):
    """A run's totals (the TierUsage fields) with its latency percentiles and breakdowns."""

    run_id: str = ""
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    by_tier: dict[str, TierUsage] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)


def _percentile(sorted_values: list[int], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[rank - 1])


class UsageLedger:
    def __init__(self, sessions: Sessions):
        self._sessions = sessions

    def record(self, *, tier: str, model: str, input_tokens: int = 0, output_tokens: int = 0,
               latency_ms: int = 0, cost_usd: Decimal | int | str = ZERO, cache_hit: bool = False,
               outcome: str = "ok", batch: bool = False, run_id: str | None = None,
               partition: str | None = None, at: datetime | None = None) -> int:
        """Record one call; returns its row id."""
        entry = UsageEntry(tier=tier, model=model, input_tokens=input_tokens, output_tokens=output_tokens,
                           latency_ms=latency_ms, cost_usd=cost_usd, cache_hit=cache_hit, outcome=outcome,
                           batch=batch, run_id=run_id, partition=partition, at=at)
        with self._sessions.write() as s:
            row = LlmUsage(**entry.row(utcnow()))
            s.add(row)
            s.flush()
            return row.id

    def record_many(self, entries: Iterable[UsageEntry]) -> int:
        """Record many calls in one transaction; returns how many."""
        now = utcnow()
        rows = [e.row(now) for e in entries]
        with self._sessions.write() as s:
            for start in range(0, len(rows), CHUNK):
                s.execute(insert(LlmUsage), rows[start:start + CHUNK])
        return len(rows)

    def spent_usd(self, since: datetime | None = None, until: datetime | None = None, *,
                  run_id: str | None = None, partition: str | None = None,
                  exclude_run_prefix: str | None = None) -> Decimal:
        """Total cost of the calls at or after `since` and before `until` (either open),
        optionally of one run or partition: what a daily or per-run budget is checked against.
        `exclude_run_prefix` leaves out runs whose id starts with it (calls without a run id
        still count), e.g. evaluations, which have a budget of their own."""
        conditions = self._window(since, until)
        if run_id is not None:
            conditions.append(LlmUsage.run_id == run_id)
        if exclude_run_prefix is not None:
            conditions.append(or_(LlmUsage.run_id.is_(None),
                                  ~LlmUsage.run_id.startswith(exclude_run_prefix, autoescape=True)))
        if partition is not None:
            conditions.append(LlmUsage.partition == partition)
        with self._sessions.read() as s:
            total = s.scalar(select(func.sum(LlmUsage.cost_usd)).where(*conditions))
        return total if total is not None else ZERO

    def usage_summary(self, run_id: str) -> UsageSummary:
        """Calls, tokens, cost, cache hits, errors and latency of one run, overall and per tier."""
        summary = UsageSummary(run_id=run_id)
        stmt = (select(LlmUsage.tier, LlmUsage.outcome, LlmUsage.cache_hit, LlmUsage.batch,
                       func.count(), func.sum(LlmUsage.input_tokens), func.sum(LlmUsage.output_tokens),
                       func.sum(LlmUsage.cost_usd))
                .where(LlmUsage.run_id == run_id)
                .group_by(LlmUsage.tier, LlmUsage.outcome, LlmUsage.cache_hit, LlmUsage.batch))
        with self._sessions.read() as s:
            groups = s.execute(stmt).all()
            latencies = sorted(s.scalars(select(LlmUsage.latency_ms).where(LlmUsage.run_id == run_id)))
        for tier, outcome, cache_hit, batch, calls, tokens_in, tokens_out, cost in groups:
            tokens_in, tokens_out, cost = int(tokens_in or 0), int(tokens_out or 0), cost or ZERO
            tier_usage = summary.by_tier.setdefault(tier, TierUsage())
            for agg in (summary, tier_usage):
                agg.calls += calls
                agg.cache_hits += calls if cache_hit else 0
                agg.errors += calls if outcome != "ok" else 0
                agg.batch_calls += calls if batch else 0
                agg.input_tokens += tokens_in
                agg.output_tokens += tokens_out
                agg.cost_usd += cost
            summary.by_outcome[outcome] = summary.by_outcome.get(outcome, 0) + calls
        summary.latency_ms_p50 = _percentile(latencies, 0.50)
        summary.latency_ms_p95 = _percentile(latencies, 0.95)
        return summary

    @staticmethod
    def _window(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if since is not None:
            conditions.append(LlmUsage.at >= as_utc(since, "since"))
        if until is not None:
            conditions.append(LlmUsage.at < as_utc(until, "until"))
        return conditions
