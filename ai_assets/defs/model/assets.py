"""The intent model's lifecycle: train a candidate, gate it, promote it."""

from dagster import (
    AssetCheckExecutionContext,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from ai_assets.core.dataset import split_banking77
from ai_assets.core.model_training import first_per_intent, train_candidate
from ai_assets.core.out_of_scope import load_out_of_scope
from ai_assets.core.text_encoders import encoder_named
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabase
from ai_assets.serving.live import INTENT_MODEL

GROUP = "model"
MODEL_VERSION = "model_version"  # metadata key: the registry version this run trained


def version_trained_in_run(context: AssetExecutionContext | AssetCheckExecutionContext, asset_key: AssetKey) -> int:
    """The registry version `intent_model` registered in this same run."""
    run_id = context.run.run_id
    event = context.instance.get_latest_materialization_event(asset_key)
    if event is None or event.run_id != run_id:
        raise RuntimeError(f"{asset_key.to_user_string()} was not materialized in run {run_id}: "
                           "train and gate a candidate in the same run (model_training_job)")
    return int(event.asset_materialization.metadata[MODEL_VERSION].value)


@asset(group_name=GROUP, kinds={"scikitlearn"})
def intent_model(context: AssetExecutionContext, model_training: IntentModelTraining,
                 ops_database: OpsDatabase) -> MaterializeResult:
    """A candidate intent model trained on the BANKING77 training split and the hand-written
    out-of-scope messages, with its threshold for the target precision fixed on validation,
    registered as a candidate. It serves traffic only after the promotion gate passes."""
    split = split_banking77()
    train = first_per_intent(split["train"], model_training.rows_per_intent)
    candidate = train_candidate(train, split["validation"], load_out_of_scope("train"),
                                load_out_of_scope("heldout"), encoder=encoder_named(model_training.encoder),
                                seed=model_training.seed, target_precision=model_training.target_precision)
    path = model_training.artifact_path(INTENT_MODEL, candidate.fingerprint, context.run_id)
    candidate.model.save(path)
    threshold = min(candidate.model.threshold, 1.0)  # inf (nothing reaches the target) is stored as 1
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
        "artifact": MetadataValue.path(str(path)),
        "artifact_bytes": path.stat().st_size,
        "training_data_fingerprint": candidate.fingerprint,
        "training_seconds": candidate.metrics["training_seconds"],
    })


@asset(group_name=GROUP, deps=[intent_model], kinds={"postgres"})
def production_intent_model(context: AssetExecutionContext, ops_database: OpsDatabase) -> MaterializeResult:
    """The version live traffic uses: the candidate of this run, promoted once the blocking
    promotion gate passed. `ai-assets model rollback` restores the previous one."""
    registry = ops_database.db().registry
    previous = registry.get_production(INTENT_MODEL)
    version = version_trained_in_run(context, intent_model.key)
    record = registry.promote(INTENT_MODEL, version, actor=f"dagster run {context.run_id}",
                              reason="promotion gate passed")
    return MaterializeResult(metadata={
        MODEL_VERSION: record.version,
        "previous_version": previous.version if previous else None,
        "confidence_threshold": record.confidence_threshold,
        "accuracy": record.metrics.get("accuracy"),
        "coverage_at_target_precision": record.metrics.get("coverage"),
    })
