"""Quality against known-good outcomes: the resolved-cases feed as a validated source, the
estimate of a day before its labels come, and the realised figures once they do — thin wiring
of `ai_assets.ingestion.resolved_cases` and `ai_assets.monitoring.quality`."""

from datetime import date
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from ai_assets.defs.common import MONITORING_GROUP, column_schema, daily_partitions
from ai_assets.ingestion.resolved_cases import LABEL_COLUMNS, match_labels, read_resolved_files, validate_resolved
from ai_assets.monitoring.quality import (
    Judgement,
    day_estimate,
    judge_accuracy,
    judge_automated_precision,
    judge_estimate_gap,
    quality_report,
)
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.registry import ModelRecord
from ai_assets.resources.landing_zone import LandingZone
from ai_assets.resources.monitoring import MonitoringSettings
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.schemas import QUARANTINE_COLUMNS
from ai_assets.serving.intent.intent_model import INTENT_MODEL

RESOLVED_FEED_ACCOUNTED = "resolved_feed_accounted"
RESOLVED_FEED_MATCHES_DAY = "resolved_feed_matches_day"
AUTOMATED_PRECISION_AT_TARGET = "automated_precision_at_target"
ACCURACY_WITHIN_MARGIN = "accuracy_within_margin_of_validation"
ESTIMATE_MATCHES_REALISED = "estimate_matches_realised"
# Labels whose message id is not among the day's: a few are ordinary (a re-delivered case), many
# mean the feed is for another day or system.
MAX_UNKNOWN_ID_SHARE = 0.01


def plotted(name: str, interval: dict | None) -> dict:
    """`{value, low, high}` as three top-level floats: the UI plots top-level numbers only."""
    interval = interval or {}
    return {name: interval.get("value"), f"{name}_low": interval.get("low"), f"{name}_high": interval.get("high")}


@multi_asset(
    partitions_def=daily_partitions, group_name=MONITORING_GROUP, can_subset=False,
    outs={"resolved_cases": AssetOut(kinds={"pandas", "parquet"},
                                     metadata={"dagster/column_schema": column_schema(LABEL_COLUMNS)}),
          "quarantined_resolved_cases": AssetOut(
              kinds={"pandas", "parquet"}, metadata={"dagster/column_schema": column_schema(QUARANTINE_COLUMNS)})},
    check_specs=[
        AssetCheckSpec(RESOLVED_FEED_ACCOUNTED, partitions_def=daily_partitions, asset="resolved_cases",
                       blocking=True,
                       description="Every feed line is a label, quarantined, a duplicate or a conflict, once"),
        AssetCheckSpec(RESOLVED_FEED_MATCHES_DAY, partitions_def=daily_partitions, asset="resolved_cases",
                       description=f"At most {MAX_UNKNOWN_ID_SHARE:.0%} of labels name a message the day did not have"),
    ],
)
def resolved_cases(context: AssetExecutionContext, validated_messages: pd.DataFrame,
                   quarantined_messages: pd.DataFrame, landing_zone: LandingZone):
    """The category an agent finally set for each of the day's messages, from the feed that
    lands a day later in `resolved_cases/<day+1>/`. Validated like any source: bad lines are
    quarantined with their reason, unknown message ids and categories counted, never dropped."""
    day = date.fromisoformat(context.partition_key)
    files, refused = read_resolved_files(Path(landing_zone.root), day, landing_zone.max_file_bytes)
    feed = validate_resolved(files, day)
    match = match_labels(feed.labels, validated_messages["message_id"],
                         quarantined_messages["message_id"].dropna())
    balance = feed.balance()
    counts = feed.to_metadata()
    yield Output(match.matched, output_name="resolved_cases", metadata={
        "dagster/row_count": len(match.matched), **counts, **match.to_metadata(),
        "files": MetadataValue.json(sorted(files)),
        "refused_files": MetadataValue.json([{"file": r.name, "reason": r.reason} for r in refused]),
    })
    yield Output(feed.quarantined, output_name="quarantined_resolved_cases", metadata={
        "dagster/row_count": len(feed.quarantined),
        "by_reason": MetadataValue.json(dict(sorted(feed.reasons.items()))),
    })
    yield AssetCheckResult(check_name=RESOLVED_FEED_ACCOUNTED, asset_key="resolved_cases",
                           passed=balance.balanced, severity=AssetCheckSeverity.ERROR,
                           metadata={**balance.to_dict(), "unaccounted": len(balance.unaccounted),
                                     "counted_twice": len(balance.counted_twice)})
    unknown_share = len(match.unknown) / match.labels_in if match.labels_in else 0.0
    yield AssetCheckResult(check_name=RESOLVED_FEED_MATCHES_DAY, asset_key="resolved_cases",
                           passed=unknown_share <= MAX_UNKNOWN_ID_SHARE and not refused,
                           severity=AssetCheckSeverity.WARN,
                           description=f"{len(match.unknown)} of {match.labels_in} labels name unknown message ids; "
                                       f"{len(refused)} feed file(s) refused",
                           metadata={"figure": round(unknown_share, 4), "threshold": MAX_UNKNOWN_ID_SHARE,
                                     "unknown_message_ids": len(match.unknown), "refused_files": len(refused)})


@asset(partitions_def=daily_partitions, group_name=MONITORING_GROUP, kinds={"pandas"})
def quality_estimate(enriched_messages: pd.DataFrame) -> MaterializeResult:
    """The day's expected accuracy before its labels arrive, from the local model's calibrated
    confidences (NannyML's CBPE idea: the mean calibrated top-class probability), with the
    interval sampling noise alone allows. `model_quality` sets it beside the realised figure."""
    estimate = day_estimate(enriched_messages).to_dict()
    return MaterializeResult(metadata={
        **plotted("estimated_accuracy", estimate),
        "estimate_coverage": estimate["coverage"],
        "estimate": MetadataValue.json(estimate),
    })


def _served_model(db: OpsDb, enriched: pd.DataFrame) -> ModelRecord | None:
    """The registry record of the local model that served most of the day (its validation
    figures are the promise the day is judged against), else today's production model."""
    labels = enriched["local_model_version"].dropna().astype(str)
    labels = labels[labels.str.startswith(f"{INTENT_MODEL} v")]
    if len(labels):
        version = labels.value_counts().index[0].rsplit(" v", 1)[1]
        if version.isdigit():
            return db.registry.get(INTENT_MODEL, int(version))
    return db.registry.get_production(INTENT_MODEL)


def _check(judgement: Judgement, check_name: str, severity: AssetCheckSeverity, figure: float | None,
           threshold: float | None, higher_is_worse: bool) -> AssetCheckResult:
    """The judgement as a check result; figure, threshold and direction tell the alert what crossed what."""
    return AssetCheckResult(check_name=check_name, asset_key="model_quality", passed=judgement.passed,
                            severity=severity, description=judgement.description,
                            metadata={"status": judgement.status, "figure": figure, "threshold": threshold,
                                      "higher_is_worse": higher_is_worse,
                                      "detail": MetadataValue.json(judgement.metadata)})


@asset(
    partitions_def=daily_partitions, group_name=MONITORING_GROUP, kinds={"pandas"},
    check_specs=[
        AssetCheckSpec(AUTOMATED_PRECISION_AT_TARGET, partitions_def=daily_partitions, asset="model_quality",
                       description="Automated decisions at the model's target precision (judged on the interval)"),
        AssetCheckSpec(ACCURACY_WITHIN_MARGIN, partitions_def=daily_partitions, asset="model_quality",
                       description="Realised accuracy within the configured margin of the validation accuracy"),
        AssetCheckSpec(ESTIMATE_MATCHES_REALISED, partitions_def=daily_partitions, asset="model_quality",
                       description="Realised accuracy where the confidences said it would be (concept drift)"),
    ],
)
def model_quality(context: AssetExecutionContext, enriched_messages: pd.DataFrame, resolved_cases: pd.DataFrame,
                  ops_database: OpsDatabaseResource, monitoring_settings: MonitoringSettings):
    """How right the day's answers were, once agents' final categories came: accuracy, macro-F1,
    precision of the automated decisions, out-of-scope messages automated and the labelled
    share, each with its 95% interval, per model version, tier and intent; beside it the
    estimate made without labels and the gap between them."""
    report = quality_report(enriched_messages, resolved_cases)
    meta = report.to_metadata()
    record = _served_model(ops_database.db(), enriched_messages)
    target = record.target_precision if record else None
    validation_accuracy = record.metrics.get("accuracy") if record else None
    comparison = meta["estimate_vs_realised"] or {}
    yield MaterializeResult(metadata={
        **plotted("accuracy", meta["accuracy"]),
        **plotted("automated_precision", meta["automated_precision"]),
        **plotted("out_of_scope_automated", meta["out_of_scope_automated"]),
        **plotted("labelled_share", meta["labelled_share"]),
        **plotted("estimated_accuracy", meta["estimate"]),
        "macro_f1": meta["macro_f1"],
        "estimate_gap": comparison.get("gap"),
        "target_precision": target,
        "validation_accuracy": validation_accuracy,
        "served_by": record.label if record else None,
        **{key: MetadataValue.json(meta[key]) for key in ("estimate_vs_realised", "by_model", "by_tier", "by_intent")},
        "labels_in": meta["labels_in"], "labels_unknown": meta["labels_unknown"],
        "rows": meta["rows"], "model_predictions": meta["model_predictions"], "automated": meta["automated"],
    })
    precision = report.overall.automated_precision
    if target is None:
        context.log.warning("no registered model for the day: precision and accuracy are not judged")
    yield _check(judge_automated_precision(precision, target if target is not None else 0.0),
                 AUTOMATED_PRECISION_AT_TARGET, AssetCheckSeverity.ERROR, precision.value, target, False)
    margin = monitoring_settings.accuracy_margin
    floor = validation_accuracy - margin if validation_accuracy is not None else None
    yield _check(judge_accuracy(report.overall.accuracy, validation_accuracy or 0.0, margin),
                 ACCURACY_WITHIN_MARGIN, AssetCheckSeverity.WARN, report.overall.accuracy.value, floor, False)
    gap = comparison.get("gap")
    yield _check(judge_estimate_gap(report.comparison, monitoring_settings.estimate_gap_margin),
                 ESTIMATE_MATCHES_REALISED, AssetCheckSeverity.WARN, None if gap is None else abs(gap),
                 monitoring_settings.estimate_gap_margin, True)
