"""Checks on enriched_messages: nothing lost or doubled between validation and the models."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetIn, MetadataValue, asset_check

from ai_assets.defs.common import daily_partitions
from ai_assets.defs.enrichment.assets import enriched_messages

EVERY_MESSAGE_ENRICHED_ONCE = "every_message_enriched_once"


@asset_check(asset=enriched_messages, name=EVERY_MESSAGE_ENRICHED_ONCE, partitions_def=daily_partitions,
             blocking=True, additional_ins={"validated_messages": AssetIn("validated_messages")})
def every_message_enriched_once(enriched_messages: pd.DataFrame,
                                validated_messages: pd.DataFrame) -> AssetCheckResult:
    """Each validated message has exactly one enriched row, with an intent and a queue: actions
    downstream must never miss a customer or answer one twice."""
    validated, enriched = list(validated_messages["message_id"]), list(enriched_messages["message_id"])
    missing = sorted(set(validated) - set(enriched))
    unexpected = sorted(set(enriched) - set(validated))
    doubled = sorted(enriched_messages["message_id"][enriched_messages["message_id"].duplicated()].unique())
    incomplete = int(enriched_messages[["intent", "queue", "priority", "tier"]].isna().any(axis=1).sum())
    return AssetCheckResult(
        passed=not (missing or unexpected or doubled or incomplete),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "validated": len(validated), "enriched": len(enriched), "incomplete_rows": incomplete,
            "missing": MetadataValue.json(missing[:20]), "unexpected": MetadataValue.json(unexpected[:20]),
            "doubled": MetadataValue.json(doubled[:20]),
        },
    )


enrichment_checks = [every_message_enriched_once]
