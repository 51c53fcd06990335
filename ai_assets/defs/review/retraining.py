"""The retraining sensor: once enough reviewed labels have arrived that no candidate was trained
with, start `model_training_job` (it snapshots them in `training_data`, trains, gates on
validation and in shadow, and promotes only if both gates pass).

"Trained with" is the watermark the latest registered intent model recorded
(`labels_watermark`: the newest review decision id of its training data), read from the model
registry rather than from Dagster's event log, so it survives a new Dagster instance and also
counts a candidate that was refused: retraining on the same labels would train the same
candidate. The job is named (it lives in the model area, which this area does not import).
"""

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from ai_assets.defs.common import MODEL_TRAINING_JOB
from ai_assets.ops_db import OpsDb
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.review.training_rows import new_labels
from ai_assets.serving.intent.intent_model import INTENT_MODEL
from ai_assets.serving.intent.training import LABELS_WATERMARK

RETRAIN_RUN_KEY_PREFIX = "retrain-"
NEW_LABELS_TAG = "ai_assets/new_reviewed_labels"
WATERMARK_TAG = "ai_assets/labels_watermark"
ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def trained_watermark(db: OpsDb) -> int:
    """The newest review decision id the latest registered intent model was trained with (0: none)."""
    versions = db.registry.list_versions(INTENT_MODEL)
    value = versions[-1].metrics.get(LABELS_WATERMARK) if versions else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


@sensor(job_name=MODEL_TRAINING_JOB, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=300)
def retraining_sensor(context: SensorEvaluationContext, ops_database: OpsDatabaseResource,
                      model_training: IntentModelTraining):
    """One training run once `retrain_min_new_labels` (AI_ASSETS_RETRAIN_MIN_NEW_LABELS) labelled
    decisions newer than the latest model's watermark are applied. The run key names the newest
    of them, so a tick evaluated twice starts one run; while a training runs, nothing more starts."""
    db = ops_database.db()
    since = trained_watermark(db)
    count, newest = new_labels(db, after_id=since)
    needed = model_training.min_new_labels()
    if count < max(1, needed):
        return SkipReason(f"{count} new reviewed label(s) since decision {since}; retraining at {needed}")
    running = context.instance.get_run_records(RunsFilter(job_name=MODEL_TRAINING_JOB, statuses=ACTIVE), limit=1)
    if running:
        return SkipReason(f"{count} new reviewed labels, but {MODEL_TRAINING_JOB} run {running[0].dagster_run.run_id} "
                          "is still going; the next tick looks again")
    context.log.info(f"{count} new reviewed labels since decision {since} (up to {newest}): retraining")
    return RunRequest(run_key=f"{RETRAIN_RUN_KEY_PREFIX}{newest}", job_name=MODEL_TRAINING_JOB,
                      tags={NEW_LABELS_TAG: str(count), WATERMARK_TAG: str(newest)})
