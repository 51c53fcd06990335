"""Checks on acting: every decision carried out exactly once, and no e-mail left undeliverable."""

import pandas as pd
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetIn, MetadataValue,
                     asset_check)
from sqlalchemy import func, select

from ai_assets.core.triage import Decision
from ai_assets.defs.actions.assets import case_actions, outbox_deliveries, triage_decisions
from ai_assets.defs.partitions import daily_partitions
from ai_assets.delivery import OutboxStore
from ai_assets.ops_db.models import Action, OutboxKind, OutboxMessage
from ai_assets.resources.ops_database import OpsDatabase

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


@asset_check(asset=case_actions, name=EVERY_DECISION_ACTED_ONCE, partitions_def=daily_partitions, blocking=True)
def every_decision_acted_once(case_actions: pd.DataFrame, ops_database: OpsDatabase) -> AssetCheckResult:
    """Counted in the operations database, not trusted from the step: each message of the day
    has exactly one ledger row under its policy version, and at most one customer e-mail."""
    ids = list(case_actions["message_id"])
    with ops_database.db().sessions.read() as s:
        ledger: dict[str, int] = {}
        mail: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            ledger.update(s.execute(select(Action.message_id, func.count()).where(Action.message_id.in_(chunk))
                                    .group_by(Action.message_id)).all())
            mail.update(s.execute(select(OutboxMessage.message_id, func.count())
                                  .where(OutboxMessage.message_id.in_(chunk),
                                         OutboxMessage.kind == OutboxKind.EMAIL.value)
                                  .group_by(OutboxMessage.message_id)).all())
    missing = sorted(m for m in ids if m not in ledger)
    doubled_mail = sorted(m for m, n in mail.items() if n > 1)
    outcomes = case_actions["outcome"].value_counts().to_dict()
    return AssetCheckResult(
        passed=not (missing or doubled_mail) and len(set(ids)) == len(ids),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "messages": len(ids), "in_ledger": sum(1 for m in ids if m in ledger),
            "outcomes": MetadataValue.json({k: int(v) for k, v in sorted(outcomes.items())}),
            "missing": MetadataValue.json(missing[:20]), "doubled_email": MetadataValue.json(doubled_mail[:20]),
        },
    )


@asset_check(asset=outbox_deliveries, name=NO_DEAD_LETTERS, partitions_def=daily_partitions)
def no_dead_letters(context: AssetCheckExecutionContext, ops_database: OpsDatabase) -> AssetCheckResult:
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
