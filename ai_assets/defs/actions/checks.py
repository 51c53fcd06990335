"""Checks on acting: every decision carried out exactly once, and no e-mail left undeliverable."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    MetadataValue,
    asset_check,
)

from ai_assets.actions.delivery import OutboxStore
from ai_assets.actions.ledger import Tally, action_tally
from ai_assets.actions.triage import Decision
from ai_assets.defs.actions.assets import case_actions, outbox_deliveries, triage_decisions
from ai_assets.defs.common import daily_partitions
from ai_assets.resources.ops_database import OpsDatabaseResource

EVERY_MESSAGE_TRIAGED_ONCE = "every_message_triaged_once"
EVERY_DECISION_ACTED_ONCE = "every_decision_acted_once"
NO_DEAD_LETTERS = "no_dead_letters"


@asset_check(asset=triage_decisions, name=EVERY_MESSAGE_TRIAGED_ONCE, partitions_def=daily_partitions,
             blocking=True, additional_ins={"enriched_messages": AssetIn("enriched_messages")})
def every_message_triaged_once(triage_decisions: pd.DataFrame, enriched_messages: pd.DataFrame) -> AssetCheckResult:
    """The gate before anything reaches a customer: one decision per enriched message, and
    nothing the models were unsure about is acted on without a person."""
    enriched = enriched_messages.set_index("message_id")
    ids = list(triage_decisions["message_id"])
    mismatch = set(ids) ^ set(enriched.index) or len(set(ids)) != len(ids)
    acting = triage_decisions[triage_decisions["decision"] != Decision.REVIEW.value]
    unsure_acted = sorted(m for m in acting["message_id"] if not bool(enriched.at[m, "automated"]))
    return AssetCheckResult(
        passed=not mismatch and not unsure_acted,
        severity=AssetCheckSeverity.ERROR,
        metadata={"enriched": len(enriched), "decisions": len(ids), "ids_match": not mismatch,
                  "acted_without_automation": MetadataValue.json(unsure_acted[:20])},
    )


@asset_check(asset=case_actions, name=EVERY_DECISION_ACTED_ONCE, partitions_def=daily_partitions, blocking=True,
             additional_ins={"triage_decisions": AssetIn("triage_decisions")})
def every_decision_acted_once(case_actions: pd.DataFrame, triage_decisions: pd.DataFrame,
                              ops_database: OpsDatabaseResource) -> AssetCheckResult:
    """Counted in the operations database, not trusted from the step: every decision of the day
    is in the ledger once under its policy version with its own content, each acted one with its
    case change, e-mail, event and audit row, each review with its review item, each message
    whose id another message holds with its id-conflict review item, and nothing else."""
    ids = list(triage_decisions["message_id"])
    versions = triage_decisions["policy_version"].unique().tolist()
    tally = Tally()
    for version in versions:
        rows = triage_decisions[triage_decisions["policy_version"] == version]
        contents = {m: (c, k) for m, c, k in zip(rows["message_id"], rows["content_hash"], rows["idempotency_key"],
                                                 strict=True)}
        tally = tally + action_tally(ops_database.db().sessions, list(rows["message_id"]), version,
                                     contents=contents)
    frame_matches = list(case_actions["message_id"]) == ids
    outcomes = case_actions["outcome"].value_counts().to_dict()
    return AssetCheckResult(
        passed=frame_matches and tally == Tally(),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "messages": len(ids), "policy_versions": MetadataValue.json(versions),
            "outcomes": MetadataValue.json({k: int(v) for k, v in sorted(outcomes.items())}),
            "lost": tally.lost, "duplicated": tally.duplicated, "half_done": tally.half_done,
            "frame_matches_decisions": frame_matches,
        },
    )


@asset_check(asset=outbox_deliveries, name=NO_DEAD_LETTERS, partitions_def=daily_partitions)
def no_dead_letters(context: AssetCheckExecutionContext, ops_database: OpsDatabaseResource) -> AssetCheckResult:
    """An e-mail or event that gave up after the last attempt is an alert: a customer or the
    case system is waiting for something that will not come until someone requeues it."""
    store = OutboxStore(ops_database.db().sessions)
    partition = context.partition_key
    dead = store.dead_letters(partition)
    return AssetCheckResult(
        passed=not dead,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "dead_letters": len(dead), "outbox_status": MetadataValue.json(store.counts(partition)),
            "examples": MetadataValue.json([{"key": r.idempotency_key, "kind": r.kind, "error": r.last_error}
                                            for r in dead[:10]]),
        },
    )


action_checks = [every_message_triaged_once, every_decision_acted_once, no_dead_letters]
