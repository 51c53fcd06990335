"""The intent model's lifecycle: train a candidate, gate it, promote it."""

from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetExecutionContext,
    AssetKey,
    DagsterEventType,
    EventLogRecord,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ai_assets.data.datasets import split_banking77
from ai_assets.defs.common import MODEL_GROUP
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.serving.intent.intent_model import INTENT_MODEL
from ai_assets.serving.intent.text_encoders import encoder_named
from ai_assets.serving.intent.training import (
    CLINC_TRAIN_PER_INTENT,
    first_per_intent,
    out_of_scope_material,
    train_candidate,
)

GROUP = MODEL_GROUP
MODEL_VERSION = "model_version"  # metadata key: the registry version this run trained
PROMOTION_GATE = "candidate_not_worse_than_production"  # the blocking check on intent_model
GATED_AGAINST = "production_version"  # its metadata key: the production version it compared with


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


def production_version_gated_against(context: AssetExecutionContext) -> int | None:
    """The production version (None: none) the promotion gate of this run compared the
    candidate with, from the gate's latest evaluation in this run or the runs it re-executes."""
    for record in _records_of_run_and_parents(context, DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if (isinstance(evaluation, AssetCheckEvaluation) and evaluation.asset_key == intent_model.key
                and evaluation.check_name == PROMOTION_GATE):
            if not evaluation.passed:
                raise RuntimeError(f"the promotion gate failed in run {record.run_id}: {evaluation.description}")
            value = evaluation.metadata[GATED_AGAINST].value
            return int(value) if value is not None else None
    raise RuntimeError(f"the promotion gate {PROMOTION_GATE} was not evaluated in run {context.run_id}")


@asset(group_name=GROUP, kinds={"scikitlearn"})
def intent_model(context: AssetExecutionContext, model_training: IntentModelTraining,
                 ops_database: OpsDatabaseResource) -> MaterializeResult:
    """A candidate intent model trained on the BANKING77 training split and the out-of-scope
    material (hand-written messages and CLINC150's training share, one CLINC domain kept out
    as never seen), with its threshold for the target precision and its precision guarantee
    fixed on validation and the CLINC calibration share, registered as a candidate. It serves
    traffic only after the promotion gate passes."""
    split = split_banking77()
    train = first_per_intent(split["train"], model_training.rows_per_intent)
    # The small configuration (N rows per intent) also trains on N CLINC rows per CLINC intent;
    # calibration, gate and report sets are the same in every configuration.
    oos = out_of_scope_material(model_training.rows_per_intent or CLINC_TRAIN_PER_INTENT)
    candidate = train_candidate(train, split["validation"], oos.train, oos.heldout,
                                encoder=encoder_named(model_training.encoder), seed=model_training.seed,
                                target_precision=model_training.target_precision,
                                oos_calibration=oos.calibration, oos_reports=oos.reports)
    path = model_training.artifact_path(INTENT_MODEL, candidate.fingerprint, context.run_id)
    candidate.model.save(path)
    # inf (nothing reaches the target) is stored as 1.0, which automates nothing; the metric
    # threshold_finite records it, and the promotion gate refuses such a candidate.
    threshold = min(candidate.model.threshold, 1.0)
    record = ops_database.db().registry.register_candidate(
        INTENT_MODEL, metrics=candidate.metrics, artifact_uri=str(path),
        training_data_fingerprint=candidate.fingerprint, confidence_threshold=threshold,
        target_precision=model_training.target_precision, notes=f"trained in run {context.run_id}")
    context.log.info(f"registered {record.label} as candidate: {candidate.metrics}")
    return MaterializeResult(metadata={
        MODEL_VERSION: record.version,
        "status": record.status,
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


@asset(group_name=GROUP, deps=[intent_model], kinds={"postgres"})
def production_intent_model(context: AssetExecutionContext, ops_database: OpsDatabaseResource) -> MaterializeResult:
    """The version live traffic uses: the candidate of this run, promoted once the blocking
    promotion gate passed. `ai-assets model rollback` restores the previous one.

    The gate's verdict holds only against the production version it compared with, so the
    promotion is a compare-and-swap against that version, read from the gate's evaluation
    (not re-read here): if a promotion or rollback happened since, the registry refuses
    (`ProductionChanged`) and this step fails; run model_training_job again to gate anew."""
    version = version_trained_in_run(context, intent_model.key)
    gated_against = production_version_gated_against(context)
    record = ops_database.db().registry.promote(
        INTENT_MODEL, version, actor=f"dagster run {context.run_id}", reason="promotion gate passed",
        expected_current=gated_against)
    return MaterializeResult(metadata={
        MODEL_VERSION: record.version,
        "previous_version": gated_against,
        "confidence_threshold": record.confidence_threshold,
        "accuracy": record.metrics.get("accuracy"),
        "coverage_at_target_precision": record.metrics.get("coverage"),
    })
