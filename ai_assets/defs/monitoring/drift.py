"""Drift of a day's inputs and of the models' answers, against the training reference and the
trailing seven days, with what moved: thin wiring of `ai_assets.monitoring.drift`. A WARN a
person investigates; AI_ASSETS_DRIFT_BLOCKING=true makes the checks blocking and holds the
day's actions behind them (see `defs.common.drift_gates`)."""

import math

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from ai_assets.config import Settings
from ai_assets.defs.common import ENRICHED_MESSAGES, MONITORING_GROUP, daily_partitions
from ai_assets.monitoring.drift import DriftReference, DriftResult, DriftSample, compare
from ai_assets.monitoring.drift_reference import cached_training_reference
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.resources.parquet_io_manager import PARTITION_WINDOW
from ai_assets.serving.live import production_model

TRAILING_DAYS = 7
INPUT_DRIFT_VS_TRAINING = "input_drift_vs_training"
INPUT_DRIFT_VS_TRAILING = "input_drift_vs_trailing_7_days"
PREDICTION_DRIFT_VS_TRAINING = "prediction_drift_vs_training"
PREDICTION_DRIFT_VS_TRAILING = "prediction_drift_vs_trailing_7_days"
BLOCKING = Settings.from_env().drift_blocking

# The day and the seven before it, whichever of them were materialized.
WINDOW = AssetIn(key=ENRICHED_MESSAGES, metadata={PARTITION_WINDOW: True},
                 partition_mapping=TimeWindowPartitionMapping(start_offset=-TRAILING_DAYS, end_offset=0))


def _split_window(context: AssetExecutionContext, window: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[str],
                                                                                             DriftSample | None]:
    day = context.partition_key
    if day not in window:
        raise Failure(f"enriched_messages of {day} is not materialized: drift needs the day itself")
    trailing = sorted(k for k in window if k != day)
    sample = DriftSample.concat([DriftSample.from_frame(window[k]) for k in trailing]) if trailing else None
    return window[day], trailing, sample


def _training_reference(ops_database: OpsDatabaseResource) -> DriftReference | None:
    """The production model's reference, built on first use and kept beside its artifact."""
    db = ops_database.db()
    record = db.registry.get_production("intent_model")
    if record is None:
        return None
    return cached_training_reference(record.artifact_uri, record.label, lambda: production_model(db).model)


def _evidence(result: DriftResult) -> tuple[float | None, float | None]:
    """(score, threshold) to plot: −log10 of the smallest p-value against −log10 of the
    Bonferroni alpha, so the line is crossed exactly when a feature's test says drift."""
    tested = [f for f in result.features if math.isfinite(f.p_value)]
    if not tested:
        return None, None
    score = -math.log10(max(min(f.p_value for f in tested), 1e-300))
    return round(score, 3), round(-math.log10(tested[0].alpha), 3)


def _metadata(prefix: str, result: DriftResult) -> dict:
    """Headline figures top-level (the UI plots them); the full result as JSON."""
    score, threshold = _evidence(result)
    meta = result.to_metadata()
    explanation = meta["explanation"]
    out = {f"{prefix}status": result.status, f"{prefix}score": score, f"{prefix}threshold": threshold,
           f"{prefix}summary": explanation.get("summary", ""),
           f"{prefix}moved": MetadataValue.json([
               {"feature": m["feature"], "statistic": m["statistic"], "value": m["value"], "what": m["what"],
                "threshold": meta["features"][m["feature"]]["threshold"]} for m in explanation.get("moved", [])]),
           f"{prefix}result": MetadataValue.json(meta)}
    for key in ("examples", "telltale_words", "top_intents"):
        if key in explanation:
            out[f"{prefix}{key}"] = MetadataValue.json(explanation[key])
    for feature, figures in meta["features"].items():
        out[f"{prefix}{feature}"] = figures["value"]
    return out


def _check(name: str, asset_key: str, result: DriftResult) -> AssetCheckResult:
    score, threshold = _evidence(result)
    return AssetCheckResult(
        check_name=name, asset_key=asset_key, passed=result.status != "drift", severity=AssetCheckSeverity.WARN,
        description=result.explanation.get("summary", result.status),
        metadata={"status": result.status, "figure": score, "threshold": threshold,
                  "moved": MetadataValue.json([m["feature"] for m in result.explanation.get("moved", [])])})


def _drift_asset(name: str, kind: str, training_check: str, trailing_check: str, doc: str):
    """One drift asset (inputs or outputs) with its two checks: against training, against the trailing days."""
    @asset(name=name, partitions_def=daily_partitions, group_name=MONITORING_GROUP, kinds={"scikit-learn"},
           ins={"window": WINDOW}, description=doc,
           check_specs=[AssetCheckSpec(training_check, asset=name, partitions_def=daily_partitions, blocking=BLOCKING,
                                       description=f"{kind.capitalize()} of the day like the training data's"),
                        AssetCheckSpec(trailing_check, asset=name, partitions_def=daily_partitions, blocking=BLOCKING,
                                       description=f"{kind.capitalize()} of the day like the {TRAILING_DAYS} days "
                                                   "before")])
    def _drift(context: AssetExecutionContext, window: dict[str, pd.DataFrame], ops_database: OpsDatabaseResource):
        day, trailing_days, trailing = _split_window(context, window)
        current = DriftSample.from_frame(day)
        reference = _training_reference(ops_database)
        if reference is None:
            context.log.warning("no production model: nothing to compare the day with but its trailing days")
        vs_training = compare(reference, current, kind=kind) if reference else None
        vs_trailing = compare(DriftReference.build(trailing, label=f"{len(trailing_days)} trailing days",
                                                   text_features=kind == "inputs"), current,
                              kind=kind) if trailing is not None else None
        metadata = {"messages": len(day), "trailing_days": MetadataValue.json(trailing_days)}
        if vs_training:
            metadata.update(_metadata("", vs_training))
        if vs_trailing:
            metadata.update(_metadata("trailing_", vs_trailing))
        yield MaterializeResult(metadata=metadata)
        for check_name, result in ((training_check, vs_training), (trailing_check, vs_trailing)):
            if result is None:
                yield AssetCheckResult(check_name=check_name, asset_key=name, passed=True,
                                       severity=AssetCheckSeverity.WARN, description="nothing to compare with yet",
                                       metadata={"status": "insufficient_data"})
            else:
                yield _check(check_name, name, result)

    return _drift


input_drift = _drift_asset(
    "input_drift", "inputs", INPUT_DRIFT_VS_TRAINING, INPUT_DRIFT_VS_TRAILING,
    "Are today's messages like the ones the model learnt from, and like last week's? Text length, "
    "words the model never saw, channel and script mix, messages unlike any in the reference, and a "
    "classifier telling the two apart; what moved, with telltale words and examples.")
prediction_drift = _drift_asset(
    "prediction_drift", "outputs", PREDICTION_DRIFT_VS_TRAINING, PREDICTION_DRIFT_VS_TRAILING,
    "Are the models answering as they did on validation, and as last week? Intent mix, confidences, "
    "out-of-scope rate, tier mix and automated share; the intents whose share moved most.")
