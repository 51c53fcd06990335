"""Layer 3: decide what to do with each enriched message, do it, and deliver what it sends."""

import time

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, Output, RetryPolicy, asset

from ai_assets.actions.delivery import OutboxStore
from ai_assets.actions.ledger import ActionLedger, MessageDecision, outcome_counts
from ai_assets.actions.triage import triage_frame
from ai_assets.defs.common import ACTIONS_GROUP, column_schema, daily_partitions, drift_gates
from ai_assets.ops_db import AuditContext, pipeline_actor
from ai_assets.resources.actions import ActionSettings
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.schemas import ACTION_COLUMNS, TRIAGE_COLUMNS

GROUP = ACTIONS_GROUP
# A database that restarts or drops off mid-step fails the step cleanly (each message is its
# own transaction); the retry finds what was done by its idempotency keys and does the rest.
DB_RETRY = RetryPolicy(max_retries=3, delay=2.0)


@asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas", "parquet"}, deps=drift_gates(),
       metadata={"dagster/column_schema": column_schema(TRIAGE_COLUMNS)})
def triage_decisions(context: AssetExecutionContext, enriched_messages: pd.DataFrame,
                     action_settings: ActionSettings) -> Output[pd.DataFrame]:
    """Per message: act on it, act and notify a person (intents never automated), or send it to
    review — from the automation verdict against the model's stored threshold and the routing
    policy. Pure: the same enriched rows and policy give the same decisions."""
    policy = action_settings.policy()
    frame = triage_frame(enriched_messages, policy)
    decisions = frame["decision"].value_counts().to_dict()
    return Output(frame, metadata={
        "dagster/row_count": len(frame),
        "rows_in": len(enriched_messages),
        "policy_version": policy.version,
        "decisions": MetadataValue.json({k: int(v) for k, v in sorted(decisions.items())}),
        "actions": MetadataValue.json({k: int(v) for k, v in sorted(frame["action"].value_counts().items())}),
        "review_reasons": MetadataValue.json(
            {k: int(v) for k, v in frame["reason"].dropna().str.split(":").str[0].value_counts().items()}),
    })


@asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"postgres", "pandas"}, retry_policy=DB_RETRY,
       metadata={"dagster/column_schema": column_schema(ACTION_COLUMNS)})
def case_actions(context: AssetExecutionContext, triage_decisions: pd.DataFrame, action_settings: ActionSettings,
                 ops_database: OpsDatabaseResource) -> Output[pd.DataFrame]:
    """Each decision carried out in one transaction: the customer's case opened or updated, the
    e-mail and case event written to the outbox, review items for people, the audit rows.
    Re-runs and backfills act on nothing twice; a person's edit to a case is never overwritten."""
    started = time.perf_counter()
    db = ops_database.db()
    ledger = ActionLedger(db.sessions, action_settings.policy(),
                          AuditContext(pipeline_actor(context.run_id), context.run_id, context.partition_key),
                          recipient_domain=action_settings.recipient_domain)
    decisions = [MessageDecision.from_triage_row(row) for row in triage_decisions.to_dict("records")]
    results = ledger.execute_all(decisions)
    frame = pd.DataFrame({
        "message_id": [r.message_id for r in results],
        "decision": [d.decision for d in decisions],
        "outcome": [r.state for r in results],  # the ledger's: a re-run gives the same frame
        "case_id": pd.array([r.case_id for r in results], dtype="Int64"),
        "idempotency_key": [d.idempotency_key for d in decisions],
    }, columns=list(ACTION_COLUMNS))
    seconds = time.perf_counter() - started
    counts = outcome_counts(results)
    return Output(frame, metadata={
        "dagster/row_count": len(frame),
        "rows_in": len(triage_decisions),
        **counts,
        "actions_per_second": round(len(results) / seconds, 1) if seconds > 0 else None,
        "duration_ms": round(seconds * 1000, 1),
    })


@asset(partitions_def=daily_partitions, group_name=GROUP, deps=[case_actions], kinds={"email", "postgres"})
def outbox_deliveries(context: AssetExecutionContext, action_settings: ActionSettings,
                      ops_database: OpsDatabaseResource) -> MaterializeResult:
    """The day's outbox delivered: e-mail over SMTP and case events over webhooks, each with a
    stable Message-ID / Idempotency-Key, retried with backoff; after the last attempt a row is a
    dead letter and the `no_dead_letters` check fails."""
    db = ops_database.db()
    report = action_settings.deliver(db, AuditContext(pipeline_actor(context.run_id), context.run_id,
                                                      context.partition_key), partition=context.partition_key)
    store = OutboxStore(db.sessions)
    counts = store.counts(context.partition_key)
    if report.dead:
        context.log.error(f"{report.dead} outbox rows became dead letters after {action_settings.max_attempts} "
                          "attempts; `ai-assets outbox status` lists them, fix the receiver, then "
                          "`ai-assets outbox requeue ID...`")
    return MaterializeResult(metadata={
        "attempted": report.attempted,
        "delivered": report.delivered,
        "failed_will_retry": report.failed,
        "dead": report.dead,
        "skipped_claimed_elsewhere": report.skipped_claimed,
        "outbox_status": MetadataValue.json(counts),
        "pending": counts.get("pending", 0),
    })
