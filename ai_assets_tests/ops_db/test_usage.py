"""LLM usage: per-call rows, exact Decimal costs, spend in half-open windows, run summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy

from ai_assets.ops_db import LlmUsage, OpsDb, UsageEntry

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_spent_in_half_open_windows(ops: OpsDb):
    u = ops.usage
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.10"), at=T0 - timedelta(microseconds=1))
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.20"), at=T0)  # the window's first instant
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.30"), at=T0 + timedelta(hours=23, minutes=59))
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.40"), at=T0 + timedelta(days=1))  # next window
    day = (T0, T0 + timedelta(days=1))
    assert u.spent_usd(*day) == Decimal("0.50")
    assert u.spent_usd(T0 + timedelta(days=1), T0 + timedelta(days=2)) == Decimal("0.40")
    assert u.spent_usd() == Decimal("1.00")
    assert u.spent_usd(since=T0) == Decimal("0.90")
    assert u.spent_usd(until=T0) == Decimal("0.10")
    assert u.spent_usd(T0 + timedelta(days=5), T0 + timedelta(days=6)) == 0
    # The same instant in another time zone is the same instant.
    cet = timezone(timedelta(hours=1))
    assert u.spent_usd(T0.astimezone(cet), (T0 + timedelta(days=1)).astimezone(cet)) == Decimal("0.50")


def test_spend_can_leave_out_runs_by_prefix(ops: OpsDb):
    u = ops.usage
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.10"), run_id="dagster-run", at=T0)
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.20"), run_id=None, at=T0)
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.40"), run_id="evaluate-1", at=T0)
    u.record(tier="llm", model="haiku", cost_usd=Decimal("0.80"), run_id="evaluateX", at=T0)  # not the prefix
    assert u.spent_usd() == Decimal("1.50")
    assert u.spent_usd(exclude_run_prefix="evaluate-") == Decimal("1.10")  # no-run calls still count
    assert u.spent_usd(exclude_run_prefix="%") == Decimal("1.50")  # a prefix, not a LIKE pattern


def test_costs_are_exact_decimals(ops: OpsDb):
    """10,000 calls at a price no binary float holds exactly sum to the exact amount."""
    per_call = Decimal("0.000123457")  # 9 decimal places: 1e-9 dollars is the unit
    ops.usage.record_many(UsageEntry(tier="llm", model="haiku", cost_usd=per_call, run_id="r1",
                                     at=T0 + timedelta(seconds=i)) for i in range(10_000))
    ops.usage.record(tier="llm", model="haiku", cost_usd=Decimal("0.000000001"), run_id="r1", at=T0)
    total = ops.usage.spent_usd(T0, T0 + timedelta(days=1))
    assert isinstance(total, Decimal)
    assert total == Decimal("1.234570001")
    assert ops.usage.usage_summary("r1").cost_usd == Decimal("1.234570001")
    big = Decimal("123456789.123456789")
    ops.usage.record(tier="llm", model="opus", cost_usd=big, run_id="r2", at=T0)
    assert ops.usage.spent_usd(run_id="r2") == big
    # Beyond 1e-9 is rounded half-even; floats go through their shortest repr; ints are dollars.
    ops.usage.record(tier="llm", model="m", cost_usd=Decimal("0.0000000025"), run_id="r3", at=T0)
    ops.usage.record(tier="llm", model="m", cost_usd=0.1, run_id="r3", at=T0)
    ops.usage.record(tier="llm", model="m", cost_usd=2, run_id="r3", at=T0)
    assert ops.usage.spent_usd(run_id="r3") == Decimal("2.100000002")


def test_usage_summary_of_a_run(ops: OpsDb):
    u = ops.usage
    for i in range(10):
        u.record(tier="claude-primary", model="haiku", input_tokens=100, output_tokens=20, latency_ms=300 + i,
                 cost_usd=Decimal("0.000180"), run_id="run-a", partition="2026-03-01", at=T0)
    u.record(tier="claude-primary", model="haiku", latency_ms=0, cache_hit=True, run_id="run-a", at=T0)
    u.record(tier="claude-primary", model="haiku", latency_ms=30_000, outcome="timeout", run_id="run-a", at=T0)
    u.record(tier="claude-secondary", model="sonnet", input_tokens=100, output_tokens=25, latency_ms=900,
             cost_usd=Decimal("0.000675"), batch=True, run_id="run-a", at=T0)
    u.record(tier="claude-primary", model="haiku", cost_usd=Decimal("5"), run_id="run-b", at=T0)

    s = u.usage_summary("run-a")
    assert (s.calls, s.cache_hits, s.errors, s.batch_calls) == (13, 1, 1, 1)
    assert (s.input_tokens, s.output_tokens) == (1100, 225)
    assert s.cost_usd == Decimal("0.002475")
    assert s.by_outcome == {"ok": 12, "timeout": 1}
    primary = s.by_tier["claude-primary"]
    assert (primary.calls, primary.cache_hits, primary.errors, primary.cost_usd) == (12, 1, 1, Decimal("0.0018"))
    assert s.by_tier["claude-secondary"].batch_calls == 1
    assert s.latency_ms_p50 == 305 and s.latency_ms_p95 == 30_000
    assert s.cache_hit_rate == pytest.approx(1 / 13)
    assert u.spent_usd(partition="2026-03-01") == Decimal("0.0018")
    assert u.usage_summary("nothing").calls == 0 and u.usage_summary("nothing").cost_usd == 0


def test_bad_rows_are_refused(ops: OpsDb):
    with pytest.raises(ValueError, match="naive"):
        ops.usage.record(tier="llm", model="m", at=datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="naive"):
        ops.usage.spent_usd(since=datetime(2026, 3, 1))
    with pytest.raises(ValueError):
        ops.usage.record(tier="llm", model="m", cost_usd=Decimal("-0.01"))
    with pytest.raises(ValueError):
        ops.usage.record(tier="llm", model="m", input_tokens=-1)
    with pytest.raises(ValueError):
        ops.usage.record(tier="llm", model="m", outcome="")
    with pytest.raises(ValueError):
        ops.usage.record(tier="llm", model="m", cost_usd=Decimal("NaN"))
    assert ops.usage.spent_usd() == 0


def test_times_are_stored_and_returned_in_utc(ops: OpsDb):
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    ops.usage.record(tier="llm", model="m", cost_usd=Decimal("0.5"), at=at)
    with ops.sessions.read() as s:
        got = s.scalar(sqlalchemy.select(LlmUsage.at))
    assert got == at and got.tzinfo is UTC and got.hour == 17
    with ops.engine.connect() as conn:  # what is in the table, read without the ORM's types
        raw = conn.exec_driver_sql("SELECT at, cost_usd FROM llm_usage").one()
    if ops.engine.dialect.name == "sqlite":
        assert raw == ("2026-03-01 17:30:15.123456", 500_000_000)  # naive UTC text, nano-dollars
    else:
        assert raw == (at, Decimal("0.500000000"))  # timestamptz, numeric(18, 9)
