"""The intent model's lifecycle: the reviewed labels, train a candidate on the shipped data plus
those labels, gate it on validation and in shadow against production, promote it."""

from collections.abc import Iterator

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetExecutionContext,
    AssetKey,
    DagsterEventType,
    EventLogRecord,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from ai_assets.data.datasets import split_banking77
from ai_assets.defs.common import MODEL_GROUP, TRAINING_DATA, column_schema
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.review import training_rows as reviewed
from ai_assets.serving.intent.intent_model import INTENT_MODEL
from ai_assets.serving.intent.text_encoders import encoder_named
from ai_assets.serving.intent.training import (
    CLINC_TRAIN_PER_INTENT,
    LABELS_WATERMARK,
    first_per_intent,
    held_out_texts,
    out_of_scope_material,
    reviewed_material,
    train_candidate,
)

GROUP = MODEL_GROUP
MODEL_VERSION = "model_version"  # metadata key: the registry version this run trained
PROMOTION_GATE = "candidate_not_worse_than_production"  # the blocking check on intent_model
GATED_AGAINST = "production_version"  # its metadata key: the production version it compared with
# The shadow test (shadow_evaluation.py), by key: production_intent_model waits for its gate.
SHADOW_EVALUATION = AssetKey("shadow_evaluation")
SHADOW_GATE = "candidate_not_worse_in_shadow"  # the blocking check on shadow_evaluation
NEWEST_DECISION_ID = "newest_decision_id"  # training_data's metadata key: the labels' watermark


def _records_of_run_and_parents(context: AssetExecutionContext | AssetCheckExecutionContext,
                                event_type: DagsterEventType) -> Iterator[EventLogRecord]:
    """This run's events of `event_type`, newest first, then its parent run's, and so on: a
    re-execution from failure skips the steps that succeeded, so their events are in the
    runs it re-executes. Other runs (a concurrent training) are never looked at."""
    run = context.run
    while run is not None:
        yield from context.instance.get_records_for_run(run.run_id, of_type=event_type, ascending=False).records
        run = context.instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None


def version_trained_in_run(context: AssetExecutionContext | AssetCheckExecutionContext, asset_key: AssetKey) -> int:
    """The registry version `asset_key` (intent_model) registered in this run or the run it re-executes."""
    for record in _records_of_run_and_parents(context, DagsterEventType.ASSET_MATERIALIZATION):
        if record.asset_key == asset_key:
            return int(record.asset_materialization.metadata[MODEL_VERSION].value)
    raise RuntimeError(f"{asset_key.to_user_string()} was not materialized in run {context.run_id} or the "
                       "runs it re-executes: train and gate a candidate in the same run (model_training_job)")


def _gate_evaluation(context: AssetExecutionContext, asset_key: AssetKey, check_name: str) -> AssetCheckEvaluation:
    """The latest evaluation of one gate in this run or the runs it re-executes; it must have passed."""
    for record in _records_of_run_and_parents(context, DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if (isinstance(evaluation, AssetCheckEvaluation) and evaluation.asset_key == asset_key
                and evaluation.check_name == check_name):
            if not evaluation.passed:
                raise RuntimeError(f"the gate {check_name} failed in run {record.run_id}: {evaluation.description}")
            return evaluation
    raise RuntimeError(f"the gate {check_name} was not evaluated in run {context.run_id}")


def production_version_gated_against(context: AssetExecutionContext) -> int | None:
    """The production version (None: none) both gates of this run compared the candidate with:
    the validation gate on intent_model and the shadow gate on shadow_evaluation, each from
    its latest evaluation in this run or the runs it re-executes. Both must have passed, and
    against the same version: a promotion or rollback between the two gates voids them."""
    versions = []
    for key, name in ((intent_model.key, PROMOTION_GATE), (SHADOW_EVALUATION, SHADOW_GATE)):
        value = _gate_evaluation(context, key, name).metadata[GATED_AGAINST].value
        versions.append(int(value) if value is not None else None)
    if versions[0] != versions[1]:
        raise RuntimeError(f"the gates compared the candidate with different production versions "
                           f"({PROMOTION_GATE}: {versions[0]}, {SHADOW_GATE}: {versions[1]}): production "
                           "changed during the run; run model_training_job again")
    return versions[0]


@asset(group_name=GROUP, kinds={"pandas", "parquet"},
       metadata={"dagster/column_schema": column_schema(reviewed.COLUMNS)})
def training_data(context: AssetExecutionContext, ops_database: OpsDatabaseResource) -> Output[pd.DataFrame]:
    """Reviewers' labels with their provenance, one row per reviewed message (its latest applied
    decision: approvals, corrections, overrides, out-of-scope rejections; spam is no label), in
    decision order: what the next candidate trains on beside the shipped data. The newest
    decision id is the watermark the retraining sensor counts new labels from."""
    rows = reviewed.training_rows(ops_database.db())
    counts = reviewed.summary(rows)
    context.log.info(f"{counts['rows']} reviewed labels, {counts['corrections']} of them corrections, "
                     f"up to decision {counts['newest_decision_id']}")
    return Output(reviewed.rows_frame(rows), metadata={
        "dagster/row_count": counts["rows"],
        "rows": counts["rows"],
        "corrections": counts["corrections"],
        NEWEST_DECISION_ID: counts["newest_decision_id"],
        "per_kind": MetadataValue.json(counts["per_kind"]),
        "per_label": MetadataValue.json(counts["per_label"]),
    })


assert training_data.key == TRAINING_DATA


def watermark(frame: pd.DataFrame) -> int:
    """The newest decision id of a training_data frame (0: no rows)."""
    return int(frame["decision_id"].max()) if len(frame) else 0


@asset(group_name=GROUP, kinds={"scikitlearn"})
def intent_model(context: AssetExecutionContext, training_data: pd.DataFrame, model_training: IntentModelTraining,
                 ops_database: OpsDatabaseResource) -> MaterializeResult:
    """A candidate intent model trained on the BANKING77 training split, the out-of-scope
    material (hand-written messages and CLINC150's training share, one CLINC domain kept out
    as never seen) and the reviewers' labels of `training_data` (in-scope labels appended to
    the training split, out-of-scope ones to the out-of-scope material), with its threshold
    for the target precision and its precision guarantee fixed on validation and the CLINC
    calibration share, registered as a candidate. Reviewed messages come from live traffic,
    never from those sets; any whose text is in one anyway is left out of training (counted),
    so no figure the gates judge was trained on. It serves traffic only after both gates pass."""
    split = split_banking77()
    # The small configuration (N rows per intent) also trains on N CLINC rows per CLINC intent;
    # calibration, gate and report sets are the same in every configuration.
    oos = out_of_scope_material(model_training.rows_per_intent or CLINC_TRAIN_PER_INTENT)
    shipped = first_per_intent(split["train"], model_training.rows_per_intent)
    labels = reviewed_material(zip(training_data["text"], training_data["label"], training_data["model_intent"],
                                   strict=True),
                               intents={r.category for r in split["train"]},
                               held_out_texts=held_out_texts(split["validation"], oos))
    candidate = train_candidate(shipped + labels.train, split["validation"], oos.train + labels.out_of_scope,
                                oos.heldout, encoder=encoder_named(model_training.encoder), seed=model_training.seed,
                                target_precision=model_training.target_precision,
                                oos_calibration=oos.calibration, oos_reports=oos.reports)
    trained_with = {**labels.to_metrics(), LABELS_WATERMARK: watermark(training_data)}
    metrics = {**candidate.metrics, **trained_with}
    path = model_training.artifact_path(INTENT_MODEL, candidate.fingerprint, context.run_id)
    candidate.model.save(path)
    # inf (nothing reaches the target) is stored as 1.0, which automates nothing; the metric
    # threshold_finite records it, and the promotion gate refuses such a candidate.
    threshold = min(candidate.model.threshold, 1.0)
    record = ops_database.db().registry.register_candidate(
        INTENT_MODEL, metrics=metrics, artifact_uri=str(path),
        training_data_fingerprint=candidate.fingerprint, confidence_threshold=threshold,
        target_precision=model_training.target_precision, notes=f"trained in run {context.run_id}")
    context.log.info(f"registered {record.label} as candidate, trained with {labels.rows} reviewed labels "
                     f"up to decision {trained_with[LABELS_WATERMARK]}: {candidate.metrics}")
    return MaterializeResult(metadata={
        MODEL_VERSION: record.version,
        "status": record.status,
        # The reviewed labels trained with, and the newest decision id among them.
        "reviewed_rows": labels.rows,
        LABELS_WATERMARK: trained_with[LABELS_WATERMARK],
        "reviewed": MetadataValue.json(trained_with),
        "confidence_threshold": round(threshold, 6),
        "metrics": MetadataValue.json(candidate.metrics),
        "accuracy": candidate.metrics["accuracy"],
        "coverage_at_target_precision": candidate.metrics["coverage"],
        "out_of_scope_automated": candidate.metrics["out_of_scope_automated"],
        "out_of_scope_automated_interval": MetadataValue.json(candidate.metrics["out_of_scope_automated_interval"]),
        "out_of_scope_automated_by_source": MetadataValue.json(candidate.metrics["out_of_scope_automated_by_source"]),
        "guarantee": MetadataValue.json(candidate.metrics["guarantee"]),
        "artifact": MetadataValue.path(str(path)),
        "artifact_bytes": path.stat().st_size,
        "training_data_fingerprint": candidate.fingerprint,
        "training_seconds": candidate.metrics["training_seconds"],
    })


@asset(group_name=GROUP, deps=[intent_model, SHADOW_EVALUATION], kinds={"postgres"})
def production_intent_model(context: AssetExecutionContext, ops_database: OpsDatabaseResource) -> MaterializeResult:
    """The version live traffic uses: the candidate of this run, promoted once both blocking
    gates passed (validation: candidate_not_worse_than_production; shadow traffic and the
    never-automated intents: candidate_not_worse_in_shadow). A refused candidate stays a
    candidate and production is untouched. `ai-assets model rollback` restores the previous one.

    The gates' verdicts hold only against the production version they compared with, so the
    promotion is a compare-and-swap against that version, read from the gates' evaluations
    (not re-read here): if a promotion or rollback happened since, the registry refuses
    (`ProductionChanged`) and this step fails; run model_training_job again to gate anew."""
    version = version_trained_in_run(context, intent_model.key)
    gated_against = production_version_gated_against(context)
    record = ops_database.db().registry.promote(
        INTENT_MODEL, version, actor=f"dagster run {context.run_id}", reason="promotion and shadow gates passed",
        expected_current=gated_against)
    return MaterializeResult(metadata={
        MODEL_VERSION: record.version,
        "previous_version": gated_against,
        "confidence_threshold": record.confidence_threshold,
        "accuracy": record.metrics.get("accuracy"),
        "coverage_at_target_precision": record.metrics.get("coverage"),
    })
