"""Model enrichment of validated messages: thin wiring around `ai_assets.serving`."""

import time

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from ai_assets.defs.common import ENRICHMENT_GROUP, PRODUCTION_INTENT_MODEL, column_schema, daily_partitions
from ai_assets.resources.model_serving import ModelServing
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.schemas import ENRICHED_COLUMNS
from ai_assets.serving.live import serving_summary

GROUP = ENRICHMENT_GROUP
PASSED_THROUGH = ["message_id", "customer_id", "channel", "received_at", "text"]
SERVED_COLUMNS = [c for c in ENRICHED_COLUMNS if c not in PASSED_THROUGH]


@asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    deps=[PRODUCTION_INTENT_MODEL],
    kinds={"pandas", "parquet", "anthropic"},
    metadata={"dagster/column_schema": column_schema(ENRICHED_COLUMNS)},
)
def enriched_messages(context: AssetExecutionContext, validated_messages: pd.DataFrame,
                      model_serving: ModelServing, ops_database: OpsDatabaseResource) -> Output[pd.DataFrame]:
    """Each validated message with its intent, confidence, queue, priority and summary, and
    whether it may be acted on without a person: the local model first, Claude for the unsure
    ones while the budget allows, then keyword rules and people."""
    started = time.perf_counter()
    alerts: list[str] = []

    def on_budget_alert(alert) -> None:
        alerts.append(alert.message)
        context.log.warning(alert.message)

    live = model_serving.live(ops_database.db(), run_id=context.run_id, partition=context.partition_key,
                              on_alert=on_budget_alert)
    if live.model is None:
        context.log.warning("no production intent model: every message is unsure and goes to the LLM "
                            "tiers, keyword rules and people; run model_training_job to train one")
    use_batch = model_serving.use_batch_for(context.partition_key)
    records = live.serve(list(validated_messages["text"]), use_batch=use_batch)
    frame = pd.concat([validated_messages[PASSED_THROUGH].reset_index(drop=True),
                       pd.DataFrame.from_records(records, columns=SERVED_COLUMNS)], axis=1)
    summary = serving_summary(records)
    return Output(frame, metadata={
        "dagster/row_count": len(frame),
        "rows_in": len(validated_messages),
        "local_model": live.local_version,
        "confidence_threshold": round(live.automation.local_threshold, 6),
        "llm_enabled": model_serving.llm_enabled,
        "batch_api": use_batch,
        "per_tier": MetadataValue.json(summary.pop("per_tier")),
        "review_reasons": MetadataValue.json(summary.pop("review_reasons")),
        **summary,
        "budget_alerts": MetadataValue.json(alerts),
        "policy_version": live.policy.version,
        "prompt_version": live.prompt_version,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    })
