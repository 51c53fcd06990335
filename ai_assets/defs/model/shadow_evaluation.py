"""The shadow test before promotion: the candidate answers the recent days' traffic beside
production, acting on nothing; its blocking gate stands between training and promotion.
Thin wiring of `ai_assets.review.shadow` (what is measured and how the gate judges: its docstring)."""

from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)

from ai_assets.data.datasets import load_categories, split_banking77
from ai_assets.defs.model.assets import (
    GATED_AGAINST,
    GROUP,
    SHADOW_EVALUATION,
    SHADOW_GATE,
    intent_model,
    version_trained_in_run,
    watermark,
)
from ai_assets.defs.model.stored_frames import read_day, recent_days
from ai_assets.resources.actions import ActionSettings
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.resources.parquet_io_manager import ParquetIOManager
from ai_assets.review.shadow import (
    DayFrames,
    answer,
    compare,
    failures,
    latency,
    limit_traffic,
    not_judged,
    shadow_traffic,
)
from ai_assets.review.training_rows import training_rows
from ai_assets.serving.intent.intent_model import INTENT_MODEL, IntentModel
from ai_assets.serving.intent.text_encoders import encoder_named
from ai_assets.serving.live import ArtifactError, production_model

VALIDATED, ENRICHED, RESOLVED = "validated_messages", "enriched_messages", "resolved_cases"
WARM_UP = ["warm up the encoder"]  # loading a network is not latency
LATENCY_TEXTS = 256  # texts both models are timed on, in turn, best of three


@asset(
    group_name=GROUP, deps=[intent_model], kinds={"scikitlearn"},
    check_specs=[AssetCheckSpec(
        SHADOW_GATE, asset=SHADOW_EVALUATION, blocking=True,
        description="Blocks promotion of a candidate that is significantly less accurate than production on "
                    "the recent days' labelled traffic it was not trained on (judged on at least 50 rows), or "
                    "whose recall on any never-automated intent (fraud, losses) is worse than production's by "
                    "more than the margin and beyond noise (judged per intent on at least 10 validation "
                    "and shadow rows).")],
)
def shadow_evaluation(context: AssetExecutionContext, training_data: pd.DataFrame,
                      model_training: IntentModelTraining, ops_database: OpsDatabaseResource,
                      action_settings: ActionSettings,
                      io_manager: ResourceParam[ParquetIOManager]) -> MaterializeResult:
    """The candidate of this run beside the production model on the last `shadow_days` days of
    stored traffic (ending at the newest stored day) and on the validation split: agreement,
    accuracy where labels exist (resolved cases, reviews newer than the training data), automated
    share and precision, LLM calls and their cost, latency ratio, never-automated recall. Without a
    production model or recent traffic it says so; the gate then leaves the decision to validation."""
    db = ops_database.db()
    record = db.registry.get(INTENT_MODEL, version_trained_in_run(context, intent_model.key))
    candidate = IntentModel.load(Path(record.artifact_uri),
                                 encoder=encoder_named(record.metrics.get("encoder", "minilm")))
    # A production artifact this installation cannot serve (trained on an encoder graph it no
    # longer has, or damaged) has nothing to compare: the candidate is its way out, so the gate
    # judges on validation, as without a production model, and still names the version it
    # was gated against.
    unservable: str | None = None
    try:
        production = production_model(db)
    except ArtifactError as exc:
        production, unservable = None, str(exc)
        context.log.warning(f"production cannot be served here, validation decides: {unservable}")
    gated_against = production.record.version if production else (
        db.registry.get_production(INTENT_MODEL).version if unservable else None)

    base = io_manager.base_dir
    days = recent_days(base, VALIDATED, model_training.days_shadowed())
    frames = {d: DayFrames(read_day(base, VALIDATED, d), read_day(base, ENRICHED, d), read_day(base, RESOLVED, d))
              for d in days}
    # Reviews after the training data's snapshot are labels the candidate never saw.
    newer = {(r.message_id, r.text): r.label for r in training_rows(db, after_id=watermark(training_data))}
    full = shadow_traffic(frames, newer, seen_ids=training_data["message_id"], seen_texts=training_data["text"])
    traffic = limit_traffic(full, model_training.shadow_max_messages)

    validation = split_banking77()["validation"]
    texts = list(traffic["text"]) + [r.text for r in validation]
    labels = load_categories()
    n = len(traffic)
    models = {"candidate": candidate, **({"production": production.model} if production is not None else {})}
    for model in models.values():
        model.predict(WARM_UP)
    cand, _ = answer(candidate, texts, threshold=record.confidence_threshold, labels=labels)
    prod = answer(production.model, texts, threshold=production.record.confidence_threshold,
                  labels=labels)[0] if production is not None else None
    timed = texts[:LATENCY_TEXTS]
    seconds = latency(models, timed, sample=LATENCY_TEXTS)
    report = compare(traffic, cand[:n], prod[:n] if prod is not None else None,
                     validation_labels=[r.category for r in validation], candidate_validation=cand[n:],
                     production_validation=prod[n:] if prod is not None else None,
                     never_automate=action_settings.policy().never_automate, candidate_version=record.label,
                     production_version=production.version if production else None,
                     seconds=seconds, timed_texts=len(timed))
    rules = model_training.shadow_rules()
    refused, unjudged = failures(report, rules), not_judged(report, rules)
    for note in report.notes + unjudged:
        context.log.warning(note)
    verdict = "; ".join(refused) or (f"{record.label} may replace {production.version} on shadow traffic "
                                     f"({n} messages of {len(days)} day(s)) and the never-automated intents"
                                     if production else f"{record.label}: no production model to compare with; "
                                                        "the validation gate decides"
                                     + (f" (production cannot be served: {unservable})" if unservable else ""))
    accuracy, automation = report.accuracy, report.automation
    return MaterializeResult(
        metadata={
            "candidate": record.label,
            "production": production.version if production else "none",
            "days": MetadataValue.json(days),
            "messages": n,
            "messages_stored": len(full),
            "labelled_rows": report.labelled["judged_rows"],
            "agreement_with_served": report.agreement["with_served"],
            "agreement_with_production": report.agreement["with_production"],
            "candidate_accuracy": accuracy["candidate"]["value"],
            "production_accuracy": (accuracy.get("production") or {}).get("value"),
            "candidate_automated_share": automation["candidate"]["share"],
            "production_automated_share": (automation.get("production") or {}).get("share"),
            "cost_difference_usd": report.cost.get("cost_difference_usd"),
            "latency_ratio": report.latency["ratio"],
            "notes": MetadataValue.json(report.notes),
            "report": MetadataValue.json(report.to_dict()),
        },
        check_results=[AssetCheckResult(
            check_name=SHADOW_GATE, asset_key=SHADOW_EVALUATION, passed=not refused, severity=AssetCheckSeverity.ERROR,
            description=verdict,
            metadata={
                "candidate": record.label,
                "production": production.version if production else "none",
                # production_intent_model promotes only if this is still the production version.
                GATED_AGAINST: gated_against,
                "failures": MetadataValue.json(refused),
                "not_judged": MetadataValue.json(unjudged),
                "labelled_rows": report.labelled["judged_rows"],
                "accuracy": MetadataValue.json(accuracy),
                "never_automated": MetadataValue.json(report.never_automated),
                "rules": MetadataValue.json(rules.__dict__),
            },
        )],
    )
