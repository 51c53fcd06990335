"""`cost_report` for one day: LLM spend of the day and of the month to date against the daily
and monthly budgets, per tier and model, a forecast of the month, and the cost per 1,000
messages.

Two clocks (see `ai_assets.ops_db.metrics_reads`): budgets are windows of the call's wall-clock
time `at`, exactly as the live `Budget` enforces them (evaluation runs, `evaluate-...`, left out
and reported apart); the cost per 1,000 messages divides the spend recorded *for the partition*
by the partition's messages, so a backfill is priced against the day it served.

Money is `Decimal` from the ledger to `to_metadata`, where it becomes a float (for plotting)
and an exact string.

Forecast (assumption: the days left in the month spend like the days so far, independently
and with no trend or weekday pattern; days without a call count as zero spend):
    forecast = month_to_date + mean_daily * days_left
A prediction interval for the *sum* of the L days left, from k observed days with mean m
and sample standard deviation s:
    m*L ± t(k-1) * s * sqrt(L + L**2 / k)
(L*s**2 for the day-to-day noise of the days to come, L**2*s**2/k for the uncertainty of m),
its lower end never below what is already spent. It needs k >= 2; on the month's last day it
is the month-to-date itself.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from scipy.stats import t as student_t

from ai_assets.monitoring.intervals import CONFIDENCE
from ai_assets.monitoring.metrics import flat_key, money_float, money_str, round_or_none, share
from ai_assets.ops_db.metrics_reads import SpendLine
from ai_assets.ops_db.types import as_money

ZERO = as_money(0)


@dataclass(frozen=True)
class MonthForecast:
    days_so_far: int
    days_left: int
    mean_daily: Decimal
    forecast: Decimal
    low: Decimal | None
    high: Decimal | None
    exceed_probability: float | None  # P(month total > monthly budget) under the same model
    confidence: float

    def to_dict(self) -> dict:
        return {"days_so_far": self.days_so_far, "days_left": self.days_left,
                "mean_daily_usd": money_str(self.mean_daily), "forecast_usd": money_str(self.forecast),
                "low_usd": money_str(self.low), "high_usd": money_str(self.high),
                "exceed_probability": round_or_none(self.exceed_probability), "confidence": self.confidence}


@dataclass(frozen=True)
class CostReport:
    day: date
    daily_budget: Decimal
    monthly_budget: Decimal
    today: list[SpendLine]  # calls at on `day`, live traffic
    month_to_date: list[SpendLine]  # calls at from the 1st to `day`, per (tier, model)
    daily_totals: dict[date, Decimal]  # the series the forecast is made of
    partition_cost: Decimal  # spend recorded for the partition `day` (any wall-clock day)
    messages: int
    cost_per_1000: Decimal | None
    evaluation_spend_today: Decimal
    forecast: MonthForecast
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def spent_today(self) -> Decimal:
        return sum((line.cost_usd for line in self.today), ZERO)

    @property
    def spent_month_to_date(self) -> Decimal:
        return sum(self.daily_totals.values(), ZERO)

    def to_metadata(self) -> dict:
        today, mtd, forecast = self.spent_today, self.spent_month_to_date, self.forecast
        flat: dict[str, Any] = {
            "cost_today_usd": money_float(today),
            "cost_month_to_date_usd": money_float(mtd),
            "daily_budget_usd": money_float(self.daily_budget),
            "monthly_budget_usd": money_float(self.monthly_budget),
            "daily_budget_share": share(today, self.daily_budget),
            "monthly_budget_share": share(mtd, self.monthly_budget),
            "forecast_month_usd": money_float(forecast.forecast),
            "forecast_month_low_usd": money_float(forecast.low),
            "forecast_month_high_usd": money_float(forecast.high),
            "forecast_budget_share": share(forecast.forecast, self.monthly_budget),
            "forecast_exceeds_budget_probability": round_or_none(forecast.exceed_probability),
            "partition_cost_usd": money_float(self.partition_cost),
            "messages": self.messages,
            "cost_per_1000_messages_usd": money_float(self.cost_per_1000),
            "llm_calls_today": sum(line.calls for line in self.today),
            "evaluation_cost_today_usd": money_float(self.evaluation_spend_today),
        }
        for line in self.today:
            flat[flat_key("cost_today_usd", line.model)] = money_float(line.cost_usd)
        return {
            **flat,
            "day": self.day.isoformat(),
            "exact_usd": {"today": money_str(today), "month_to_date": money_str(mtd),
                          "partition": money_str(self.partition_cost),
                          "per_1000_messages": money_str(self.cost_per_1000),
                          "evaluation_today": money_str(self.evaluation_spend_today)},
            "today_by_model": [_line_dict(line) for line in self.today],
            "month_to_date_by_model": [_line_dict(line) for line in self.month_to_date],
            "daily_usd": {d.isoformat(): money_str(v) for d, v in sorted(self.daily_totals.items())},
            "forecast": forecast.to_dict(),
            "unavailable": self.unavailable,
        }


def _line_dict(line: SpendLine) -> dict:
    return {"tier": line.tier, "model": line.model, "calls": line.calls, "cache_hits": line.cache_hits,
            "errors": line.errors, "input_tokens": line.input_tokens, "output_tokens": line.output_tokens,
            "cost_usd": money_str(line.cost_usd)}


def merge_lines(groups: Sequence[Sequence[SpendLine]]) -> list[SpendLine]:
    """Spend lines of several windows summed per (tier, model), sorted."""
    sums: dict[tuple[str, str], list[Any]] = {}
    for lines in groups:
        for line in lines:
            acc = sums.setdefault((line.tier, line.model), [0, 0, 0, 0, 0, ZERO])
            for i, value in enumerate((line.calls, line.cache_hits, line.errors, line.input_tokens,
                                       line.output_tokens, line.cost_usd)):
                acc[i] += value
    return [SpendLine(tier, model, *acc) for (tier, model), acc in sorted(sums.items())]


def month_forecast(day: date, daily_totals: Sequence[Decimal], monthly_budget: Decimal,
                   confidence: float = CONFIDENCE) -> tuple[MonthForecast, str | None]:
    """The month's forecast from the spend of its days 1..day (in order), and why the
    interval is missing when it is (None otherwise). See the module docstring."""
    k = len(daily_totals)
    if k != day.day:
        raise ValueError(f"need the spend of each of the {day.day} days up to {day}, got {k}")
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    left = days_in_month - k
    mtd = sum(daily_totals, ZERO)
    mean = as_money(mtd / k)
    forecast = as_money(mtd + mtd * left / k)  # one rounding, at the end
    if left == 0:
        exceed = 1.0 if mtd > monthly_budget else 0.0
        return MonthForecast(k, 0, mean, mtd, mtd, mtd, exceed, confidence), None
    if k < 2:
        return (MonthForecast(k, left, mean, forecast, None, None, None, confidence),
                "one day of spend gives no day-to-day spread: the interval starts on the 2nd")
    values = [float(v) for v in daily_totals]
    m = float(mean)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (k - 1))
    scale = s * math.sqrt(left + left * left / k)
    headroom = float(monthly_budget - mtd) - m * left  # budget left after the expected spend
    if scale == 0:  # every day spent the same: the model has no uncertainty left
        low = high = forecast
        exceed = 1.0 if forecast > monthly_budget else 0.0
    else:
        half = as_money(float(student_t.ppf(0.5 + confidence / 2, k - 1)) * scale)
        low, high = max(mtd, forecast - half), forecast + half
        exceed = float(student_t.sf(headroom / scale, k - 1))
    return MonthForecast(k, left, mean, forecast, low, high, exceed, confidence), None


def cost_report(day: date, daily_spend: Mapping[date, Sequence[SpendLine]], partition_spend: Sequence[SpendLine],
                messages: int, *, daily_budget: Decimal | float | str, monthly_budget: Decimal | float | str,
                evaluation_spend_today: Decimal = ZERO, confidence: float = CONFIDENCE) -> CostReport:
    """The day's cost report. `daily_spend`: live spend lines per UTC day from the 1st of the
    month to `day` (`MetricsReads.daily_spend(..., exclude_run_prefix=EVALUATION_RUN_PREFIX)`;
    a missing day counts as no spend); `partition_spend`: the lines recorded for partition
    `day`; `messages`: the partition's messages (rows of `enriched_messages`)."""
    first = day.replace(day=1)
    outside = sorted(d for d in daily_spend if not first <= d <= day)
    if outside:
        raise ValueError(f"daily_spend holds days outside {first}..{day}: {outside[:3]}")
    days = [first + timedelta(days=i) for i in range(day.day)]
    totals = {d: sum((line.cost_usd for line in daily_spend.get(d, ())), ZERO) for d in days}
    daily_limit, monthly_limit = as_money(daily_budget), as_money(monthly_budget)
    forecast, why_no_interval = month_forecast(day, [totals[d] for d in days], monthly_limit, confidence)
    unavailable: dict[str, str] = {}
    if why_no_interval:
        unavailable["forecast_interval"] = why_no_interval
    partition_cost = sum((line.cost_usd for line in partition_spend), ZERO)
    per_1000 = None
    if messages > 0:
        per_1000 = as_money(partition_cost * 1000 / messages)
    else:
        unavailable["cost_per_1000_messages"] = "no messages in the partition"
    if daily_limit == 0 or monthly_limit == 0:
        unavailable["budget_share"] = "a budget of zero has no share"
    today = sorted(daily_spend.get(day, ()), key=lambda line: (line.tier, line.model))
    if not today:
        unavailable["today_by_model"] = "no LLM calls today"
    return CostReport(day=day, daily_budget=daily_limit, monthly_budget=monthly_limit, today=list(today),
                      month_to_date=merge_lines([daily_spend.get(d, ()) for d in days]), daily_totals=totals,
                      partition_cost=partition_cost, messages=messages, cost_per_1000=per_1000,
                      evaluation_spend_today=as_money(evaluation_spend_today), forecast=forecast,
                      unavailable=dict(sorted(unavailable.items())))


__all__ = ["CostReport", "MonthForecast", "cost_report", "merge_lines", "month_forecast"]
