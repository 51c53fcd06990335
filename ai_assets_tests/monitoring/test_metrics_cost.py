"""`cost_report`: spend against the daily and monthly budgets from usage rows recorded into a
real ops database, the month forecast on a known series (and its interval's coverage), cost
per 1,000 messages, exact money, and the days with nothing to divide by."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from scipy.stats import t as student_t

from ai_assets.monitoring.cost import cost_report, month_forecast
from ai_assets.ops_db import OpsDb, UsageEntry
from ai_assets.ops_db.metrics_reads import MetricsReads, day_window
from ai_assets.ops_db.types import as_money
from ai_assets.resources.model_serving import EVALUATION_RUN_PREFIX

SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"
DAY = date(2026, 11, 10)  # November: 30 days, 20 left after the 10th
# Live spend of Nov 1..10; the 4th had no LLM call at all.
SERIES = ["2.10", "1.85", "2.40", "0", "3.05", "2.20", "1.95", "2.60", "2.45", "2.30"]


@pytest.fixture
def db(tmp_path):
    with OpsDb.open(f"sqlite:///{tmp_path / 'ops.db'}") as ops:
        yield ops


def record_month(db: OpsDb) -> None:
    entries = []
    for i, amount in enumerate(SERIES):
        day = date(2026, 11, 1 + i)
        start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        total = Decimal(amount)
        if total == 0:
            continue
        sonnet = (total * Decimal("0.75")).quantize(Decimal("0.000000001"))
        # Spread over many calls at prices no float holds exactly: the sums must stay exact.
        calls = 40
        per_call = (sonnet / calls).quantize(Decimal("0.000000001"))
        entries += [UsageEntry(tier=SONNET, model=SONNET, cost_usd=per_call, input_tokens=900, output_tokens=60,
                               latency_ms=700, run_id=f"run-{day}", partition=day.isoformat(),
                               at=start + timedelta(minutes=j)) for j in range(calls)]
        entries.append(UsageEntry(tier=HAIKU, model=HAIKU, cost_usd=total - per_call * calls, run_id=f"run-{day}",
                                  partition=day.isoformat(), at=start + timedelta(hours=2)))
        entries.append(UsageEntry(tier=SONNET, model=SONNET, cache_hit=True, run_id=f"run-{day}",
                                  partition=day.isoformat(), at=start + timedelta(hours=3)))
    # An evaluation today: its own budget, left out of live spend and shown apart.
    entries.append(UsageEntry(tier=SONNET, model=SONNET, cost_usd=Decimal("4.00"), run_id=f"{EVALUATION_RUN_PREFIX}1",
                              at=datetime(2026, 11, 10, 15, tzinfo=UTC)))
    # Today's backfill of the 3rd: charged to today's budget window, priced against the 3rd's messages.
    entries.append(UsageEntry(tier=HAIKU, model=HAIKU, cost_usd=Decimal("0.50"), batch=True, run_id="backfill",
                              partition="2026-11-03", at=datetime(2026, 11, 10, 16, tzinfo=UTC)))
    db.usage.record_many(entries)


def report_for(db: OpsDb, day: date, messages: int, **kw):
    reads = MetricsReads(db.sessions)
    daily = reads.daily_spend(day.replace(day=1), day, exclude_run_prefix=EVALUATION_RUN_PREFIX)
    evaluation = sum((line.cost_usd for line in reads.spend_lines(*day_window(day),
                                                                  only_run_prefix=EVALUATION_RUN_PREFIX)),
                     Decimal(0))
    return cost_report(day, daily, reads.spend_lines(partition=day.isoformat()), messages,
                       evaluation_spend_today=evaluation, **kw)


def test_budgets_forecast_and_cost_per_thousand_on_a_known_month(db):
    record_month(db)
    report = report_for(db, DAY, 1234, daily_budget=20, monthly_budget=400)
    today = Decimal("2.30") + Decimal("0.50")  # the backfill call ran today
    daily = [Decimal(x) for x in SERIES]
    daily[-1] = today
    mtd = sum(daily)
    assert report.spent_today == today and report.spent_month_to_date == mtd
    assert list(report.daily_totals.values()) == daily
    meta = report.to_metadata()
    assert meta["exact_usd"]["month_to_date"] == str(as_money(mtd))
    assert meta["daily_budget_share"] == round(float(today / 20), 6) == 0.14
    assert meta["monthly_budget_share"] == round(float(mtd / 400), 6)
    assert meta["evaluation_cost_today_usd"] == 4.0 and meta["llm_calls_today"] == 43  # 40 + 1 + a cache hit + the backfill
    # Month: mean of the 10 days so far, times the 20 left, on top of what is spent.
    assert report.forecast.forecast == as_money(mtd * 3) and meta["forecast_month_usd"] == float(mtd * 3)
    values = np.array([float(x) for x in daily])
    half = student_t.ppf(0.975, 9) * values.std(ddof=1) * math.sqrt(20 + 20 ** 2 / 10)
    assert float(report.forecast.low) == pytest.approx(float(mtd * 3) - half, abs=1e-6)
    assert float(report.forecast.high) == pytest.approx(float(mtd * 3) + half, abs=1e-6)
    assert report.forecast.exceed_probability < 1e-6  # $64.20 forecast against $400
    # P(month > budget): the days left must spend more than the budget's headroom.
    scale = values.std(ddof=1) * math.sqrt(20 + 20 ** 2 / 10)
    for budget in (70, 60):
        headroom = budget - float(mtd) - float(mtd) / 10 * 20
        assert month_forecast(DAY, daily, Decimal(budget))[0].exceed_probability == pytest.approx(
            student_t.sf(headroom / scale, 9), abs=1e-9)
    assert month_forecast(DAY, daily, Decimal(60))[0].exceed_probability > 0.5
    # Per 1,000 messages: the spend recorded for the partition (the backfill was for the 3rd).
    assert report.partition_cost == Decimal("2.30")
    assert report.cost_per_1000 == as_money(Decimal("2.30") * 1000 / 1234)
    assert meta["cost_per_1000_messages_usd"] == round(2300 / 1234, 6)
    by_model = {line["model"]: line for line in meta["today_by_model"]}
    assert by_model[SONNET]["calls"] == 41 and by_model[SONNET]["cache_hits"] == 1
    assert Decimal(by_model[SONNET]["cost_usd"]) + Decimal(by_model[HAIKU]["cost_usd"]) == today
    assert sum(Decimal(line["cost_usd"]) for line in meta["month_to_date_by_model"]) == mtd
    assert meta[f"cost_today_usd__{HAIKU}"] == float(Decimal(by_model[HAIKU]["cost_usd"]).quantize(Decimal("1e-6")))
    json.dumps(meta)


def test_a_day_with_no_llm_calls_and_a_day_with_no_messages(db):
    record_month(db)
    quiet = report_for(db, date(2026, 11, 4), 800, daily_budget="20", monthly_budget="400")
    meta = quiet.to_metadata()
    assert meta["cost_today_usd"] == 0.0 and meta["daily_budget_share"] == 0.0 and meta["llm_calls_today"] == 0
    assert meta["cost_per_1000_messages_usd"] == 0.0 and "today_by_model" in meta["unavailable"]
    empty = report_for(db, DAY, 0, daily_budget="20", monthly_budget="400")
    meta = empty.to_metadata()
    assert meta["cost_per_1000_messages_usd"] is None
    assert meta["unavailable"]["cost_per_1000_messages"] == "no messages in the partition"
    zero_budget = report_for(db, DAY, 10, daily_budget="0", monthly_budget="0").to_metadata()
    assert zero_budget["daily_budget_share"] is None and "budget_share" in zero_budget["unavailable"]


def test_forecast_edges_first_day_last_day_and_a_flat_month():
    first, why = month_forecast(date(2026, 11, 1), [Decimal("3.00")], Decimal(400))
    assert first.forecast == Decimal(90) and first.low is None and "2nd" in why
    flat, why = month_forecast(date(2026, 11, 5), [Decimal("2.00")] * 5, Decimal(50))
    assert why is None and flat.low == flat.high == flat.forecast == Decimal(60) and flat.exceed_probability == 1.0
    last, _ = month_forecast(date(2026, 2, 28), [Decimal("1.5")] * 27 + [Decimal("4")], Decimal(40))
    assert (last.days_left, last.forecast, last.low, last.high) == (0, Decimal("44.5"), Decimal("44.5"),
                                                                    Decimal("44.5"))
    assert last.exceed_probability == 1.0
    with pytest.raises(ValueError, match="each of the 5 days"):
        month_forecast(date(2026, 11, 5), [Decimal(1)] * 4, Decimal(1))


def test_the_forecast_interval_covers_the_month_total_as_stated():
    """Days drawn independently (the stated assumption): the 95% interval holds the month's
    real total in about 95% of months."""
    rng = random.Random(11)
    covered, months = 0, 1500
    for _ in range(months):
        days = [as_money(max(0.0, rng.gauss(5.0, 1.2))) for _ in range(30)]
        f, _ = month_forecast(date(2026, 11, 10), days[:10], Decimal(400))
        covered += f.low <= sum(days) <= f.high
    assert 0.93 <= covered / months <= 0.97


def test_spend_outside_the_month_is_refused(db):
    with pytest.raises(ValueError, match="outside"):
        cost_report(DAY, {date(2026, 10, 31): []}, [], 1, daily_budget=1, monthly_budget=1)
