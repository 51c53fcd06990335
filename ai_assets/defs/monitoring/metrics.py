"""The day's pipeline, cost and business figures: thin wiring of `ai_assets.monitoring`'s
pipeline_metrics, cost and business modules. Every figure is metadata on its partition, so the
UI plots it over the days; the budget check turns a crossing into one alert."""

from datetime import date
from decimal import Decimal

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    asset,
)

from ai_assets.defs.common import MONITORING_GROUP, daily_partitions
from ai_assets.defs.monitoring.run_records import step_records
from ai_assets.monitoring.business import business_metrics as compute_business_metrics
from ai_assets.monitoring.cost import cost_report as compute_cost_report
from ai_assets.monitoring.pipeline_metrics import pipeline_metrics as compute_pipeline_metrics
from ai_assets.ops_db.metrics_reads import MetricsReads, day_window
from ai_assets.resources.model_serving import EVALUATION_RUN_PREFIX
from ai_assets.resources.monitoring import MonitoringSettings
from ai_assets.resources.ops_database import OpsDatabaseResource

WITHIN_LLM_BUDGET = "within_llm_budget"
# Warn before the hard stop (the budget itself degrades to the local tier at 100%).
BUDGET_WARN_SHARE = 0.8


@asset(partitions_def=daily_partitions, group_name=MONITORING_GROUP, kinds={"postgres"},
       deps=["enriched_messages", "outbox_deliveries"])
def pipeline_metrics(context: AssetExecutionContext, enriched_messages: pd.DataFrame,
                     ops_database: OpsDatabaseResource) -> MaterializeResult:
    """How the day ran: latency p50/p95/p99 per tier and per step, throughput, error, retry and
    fallback rates, circuit-breaker refusals and the LLM cache hit rate, from the usage ledger
    and the Dagster step records of the runs that produced the day."""
    reads = MetricsReads(ops_database.db().sessions)
    pk = context.partition_key
    metrics = compute_pipeline_metrics(pk, enriched_messages, reads.usage_calls(pk),
                                       step_records(context.instance, pk), reads.outbox_times(pk))
    return MaterializeResult(metadata=metrics.to_metadata())


def _budget_check(metadata: dict, day: date) -> AssetCheckResult:
    """Spend of the day and of the month against their budgets: WARN from 80%, ERROR at 100%.
    The alert window is the day for the daily budget and the month for the monthly one, so a
    month over budget alerts once, not on every later day."""
    shares = {"daily": metadata["daily_budget_share"] or 0.0, "monthly": metadata["monthly_budget_share"] or 0.0}
    worst = max(shares, key=lambda k: shares[k])
    share = shares[worst]
    severity = AssetCheckSeverity.ERROR if share >= 1.0 else AssetCheckSeverity.WARN
    window = day.isoformat() if worst == "daily" else day.strftime("%Y-%m")
    return AssetCheckResult(
        check_name=WITHIN_LLM_BUDGET, passed=share < BUDGET_WARN_SHARE, severity=severity,
        description=f"LLM spend at {share:.0%} of the {worst} budget (warn from {BUDGET_WARN_SHARE:.0%})",
        metadata={"figure": round(share, 4), "threshold": BUDGET_WARN_SHARE, "budget": worst,
                  "alert_window": window, "daily_budget_share": shares["daily"],
                  "monthly_budget_share": shares["monthly"]})


@asset(partitions_def=daily_partitions, group_name=MONITORING_GROUP, kinds={"postgres"},
       deps=["enriched_messages"],
       check_specs=[AssetCheckSpec(WITHIN_LLM_BUDGET, partitions_def=daily_partitions, asset=AssetKey("cost_report"),
                                   description="LLM spend below 80% of the daily and monthly budgets")])
def cost_report(context: AssetExecutionContext, enriched_messages: pd.DataFrame, ops_database: OpsDatabaseResource,
                monitoring_settings: MonitoringSettings):
    """What the models cost: the day and the month to date against the budgets, per tier and
    model, the forecast for the month with its interval, and the cost per 1,000 messages.
    Evaluation runs (`ai-assets evaluate`) are shown apart, never counted as live spend."""
    reads = MetricsReads(ops_database.db().sessions)
    day = date.fromisoformat(context.partition_key)
    evaluation = reads.spend_lines(*day_window(day), only_run_prefix=EVALUATION_RUN_PREFIX)
    report = compute_cost_report(
        day, reads.daily_spend(day.replace(day=1), day, exclude_run_prefix=EVALUATION_RUN_PREFIX),
        reads.spend_lines(partition=context.partition_key), len(enriched_messages),
        daily_budget=Decimal(str(monitoring_settings.daily_budget_usd)),
        monthly_budget=Decimal(str(monitoring_settings.monthly_budget_usd)),
        evaluation_spend_today=sum((line.cost_usd for line in evaluation), Decimal(0)))
    metadata = report.to_metadata()
    yield MaterializeResult(metadata=metadata)
    yield _budget_check(metadata, day)


@asset(partitions_def=daily_partitions, group_name=MONITORING_GROUP, kinds={"postgres"},
       deps=["outbox_deliveries"])
def business_metrics(context: AssetExecutionContext, triage_decisions: pd.DataFrame, case_actions: pd.DataFrame,
                     validated_messages: pd.DataFrame, quarantined_messages: pd.DataFrame,
                     ops_database: OpsDatabaseResource, monitoring_settings: MonitoringSettings) -> MaterializeResult:
    """What the automation bought the bank: automation and escalation rates, time from receipt
    to action, agent minutes saved and the errors caught before they reached a customer. The
    override rate waits for the reviewers' decisions (layer 5)."""
    reads = MetricsReads(ops_database.db().sessions)
    pk = context.partition_key
    metrics = compute_business_metrics(
        pk, triage_decisions, case_actions, validated_messages[["message_id", "received_at"]],
        reads.action_times(pk), reads.outbox_times(pk), quarantined=len(quarantined_messages),
        minutes_per_case=monitoring_settings.minutes_per_case)
    return MaterializeResult(metadata=metrics.to_metadata())
