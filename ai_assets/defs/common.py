"""What the Dagster areas share without importing each other: the partitions, the group and
job names, the keys of assets another area depends on, and the column-schema helper."""

from dagster import AssetCheckKey, AssetKey, DailyPartitionsDefinition, TableColumn, TableSchema

from ai_assets.config import Settings

# One partition per UTC day of inbox traffic; every layer shares it so a backfill of a
# range of days reprocesses the whole chain for those days.
daily_partitions = DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")

INGESTION_GROUP = "ingestion"
MODEL_GROUP = "model"
ENRICHMENT_GROUP = "enrichment"
ACTIONS_GROUP = "actions"
MONITORING_GROUP = "monitoring"
REVIEW_GROUP = "review"

INGESTION_JOB = "ingestion_job"  # the whole daily pipeline: landing files to delivered actions
MODEL_TRAINING_JOB = "model_training_job"
LABEL_FEEDBACK_JOB = "label_feedback_job"  # a day's resolved cases in, its realised model quality out
REVIEW_ACTIONS_JOB = "review_actions_job"  # reviewers' decisions applied through the action path

# Referenced across areas by key, so no area imports another's asset objects.
PRODUCTION_INTENT_MODEL = AssetKey("production_intent_model")
ENRICHED_MESSAGES = AssetKey("enriched_messages")
TRAINING_DATA = AssetKey("training_data")  # reviewed labels with provenance, for the next training
# The monitoring assets the daily job materializes with the day (the label-driven ones run
# when the resolved cases land, a day later: LABEL_FEEDBACK_JOB).
DAILY_MONITORING_ASSETS = tuple(AssetKey(name) for name in (
    "quality_estimate", "input_drift", "prediction_drift", "pipeline_metrics", "cost_report", "business_metrics"))
DRIFT_ASSETS = (AssetKey("input_drift"), AssetKey("prediction_drift"))


def drift_gates() -> list[AssetKey]:
    """What the day's actions wait for: the drift assets when AI_ASSETS_DRIFT_BLOCKING is on (their
    blocking checks then hold triage until a person looks), else nothing (drift is a WARN)."""
    return list(DRIFT_ASSETS) if Settings.from_env().drift_blocking else []
# The asset-wide freshness checks of the ingestion area (Dagster names them `freshness_check`):
# they judge the latest partition, so their own sensor runs them, never a partition's run.
FRESHNESS_CHECK_KEYS = tuple(AssetCheckKey(AssetKey(name), "freshness_check")
                             for name in ("raw_messages", "validated_messages", "quarantined_messages"))


def column_schema(columns: dict[str, str]) -> TableSchema:
    """The `dagster/column_schema` metadata the UI shows on an asset page."""
    return TableSchema(columns=[TableColumn(name, type=kind) for name, kind in columns.items()])
