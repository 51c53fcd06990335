"""The promotion gate: a blocking check between training and production."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from ai_assets.defs.model.assets import GATED_AGAINST, PROMOTION_GATE, intent_model, version_trained_in_run
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.serving.intent.intent_model import INTENT_MODEL
from ai_assets.serving.intent.promotion import gate_failures


@asset_check(asset=intent_model, name=PROMOTION_GATE, blocking=True,
             description="Blocks promotion of a candidate whose validation accuracy or coverage at the "
                         "target precision is worse than production's or below the floors, which "
                         "automates too many held-out out-of-scope messages (judged on at least "
                         "500), or for which no confidence threshold reaches the target precision.")
def candidate_not_worse_than_production(context: AssetCheckExecutionContext, model_training: IntentModelTraining,
                                        ops_database: OpsDatabaseResource) -> AssetCheckResult:
    registry = ops_database.db().registry
    candidate = registry.get(INTENT_MODEL, version_trained_in_run(context, intent_model.key))
    production = registry.get_production(INTENT_MODEL)
    failures = gate_failures(candidate.metrics, production.metrics if production else None,
                             model_training.gate_rules())
    # The judged ones, then those shown, not judged: see train_candidate.
    keys = ("accuracy", "coverage", "out_of_scope_automated", "n_out_of_scope_heldout", "threshold_finite",
            "out_of_scope_automated_interval", "out_of_scope_automated_upper95", "guaranteed_precision",
            "out_of_scope_automated_by_source", "out_of_scope_automated_training_oof")
    return AssetCheckResult(
        passed=not failures,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(failures) or f"{candidate.label} may replace "
                                           f"{production.label if production else 'nothing (first version)'}",
        metadata={
            "candidate": candidate.label,
            "production": production.label if production else "none",
            # production_intent_model promotes only if this is still the production version.
            GATED_AGAINST: production.version if production else None,
            "candidate_metrics": MetadataValue.json({k: candidate.metrics.get(k) for k in keys}),
            # The share the gate judged, with its exact 95% interval and the set's size.
            "out_of_scope_automated_interval": MetadataValue.json(
                candidate.metrics.get("out_of_scope_automated_interval") or {}),
            "production_metrics": MetadataValue.json({k: production.metrics.get(k) for k in keys}
                                                     if production else {}),
            "rules": MetadataValue.json(model_training.gate_rules().__dict__),
            "failures": MetadataValue.json(failures),
        },
    )


model_checks = [candidate_not_worse_than_production]
