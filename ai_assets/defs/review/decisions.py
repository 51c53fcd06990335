"""Reviewers' decisions applied: a sensor sees new pending decisions and starts the run whose
`review_actions` asset applies them through the action path (ai_assets/review/apply.py)."""

from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    sensor,
)
from sqlalchemy import func, select

from ai_assets.defs.common import REVIEW_ACTIONS_JOB, REVIEW_GROUP
from ai_assets.ops_db import AuditContext, pipeline_actor
from ai_assets.ops_db.tables import DecisionStatus, ReviewDecision
from ai_assets.resources.actions import ActionSettings
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.review.apply import apply_pending

NO_FAILED_DECISIONS = "no_failed_decisions"
# A batch whose run ended with decisions still pending (the run failed: the database was gone)
# is requested again after this long, not at every tick.
RETRY_AFTER_S = 300.0
# A run of the job younger than this that has not finished holds new requests back (one run at a
# time applies the queue); an older one is taken for stuck and no longer blocks.
IN_FLIGHT_MAX_AGE = timedelta(hours=1)
IN_FLIGHT = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED]


@asset(group_name=REVIEW_GROUP, kinds={"postgres"}, retry_policy=RetryPolicy(max_retries=3, delay=2.0),
       check_specs=[AssetCheckSpec(NO_FAILED_DECISIONS, asset="review_actions",
                                   description="Every decision this run took up was applied or sent back as "
                                               "a conflict; none failed.")])
def review_actions(context: AssetExecutionContext, action_settings: ActionSettings,
                   ops_database: OpsDatabaseResource) -> MaterializeResult:
    """What reviewers decided, done: approvals and corrections run their intent's policy action
    (the case opened or updated, the customer e-mail, the case event), overrides run their
    compensating action, rejections close the item without sending anything — each decision in
    one transaction, through the same conflict-checked, idempotent path as automatic actions. A
    case changed after its reviewer read it is not written over: the item goes back to the queue.
    E-mail and events wait in the outbox for the delivery sweep (outbox_retry_job, every 10 min)."""
    report = apply_pending(ops_database.db(), action_settings.policy(),
                           AuditContext(pipeline_actor(context.run_id), context.run_id),
                           recipient_domain=action_settings.recipient_domain)
    failures = [{"decision_id": r.decision_id, "kind": r.kind, "error": r.detail}
                for r in report.results if r.outcome == DecisionStatus.FAILED.value]
    for failure in failures:
        context.log.error(f"review decision {failure['decision_id']} ({failure['kind']}) could not be applied: "
                          f"{failure['error']}")
    summary = report.summary()
    return MaterializeResult(
        metadata={
            "pending_in": report.pending_in,
            "applied": report.applied,
            "conflicts": report.conflicts,
            "failed": report.failed,
            "taken_by_another_run": report.taken,
            "balanced": report.balanced,
            "by_kind": MetadataValue.json(summary["by_kind"]),
            "duration_ms": summary["duration_ms"],
            "slowest_decision_ms": summary["slowest_decision_ms"],
        },
        check_results=[AssetCheckResult(
            check_name=NO_FAILED_DECISIONS, passed=not failures and report.balanced,
            severity=AssetCheckSeverity.WARN,
            description=f"{len(failures)} decision(s) could not be applied" if failures else None,
            metadata={"failed": len(failures), "failures": MetadataValue.json(failures[:20])})],
    )


review_actions_job = define_asset_job(
    REVIEW_ACTIONS_JOB, selection=AssetSelection.assets(review_actions),
    description="Apply the reviewers' pending decisions through the action path.")


def _pending(ops_database: OpsDatabaseResource) -> tuple[int, int | None]:
    with ops_database.db().sessions.read() as s:
        count, highest = s.execute(select(func.count(), func.max(ReviewDecision.id))
                                   .where(ReviewDecision.status == DecisionStatus.PENDING.value)).one()
    return int(count), highest


def _in_flight(context: SensorEvaluationContext, now: datetime) -> bool:
    records = context.instance.get_run_records(
        filters=RunsFilter(job_name=REVIEW_ACTIONS_JOB, statuses=IN_FLIGHT, created_after=now - IN_FLIGHT_MAX_AGE),
        limit=1)
    return bool(records)


@sensor(job=review_actions_job, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def review_decisions_sensor(context: SensorEvaluationContext, ops_database: OpsDatabaseResource):
    """One run per batch of new decisions: the highest pending decision id is the run key and
    the cursor, so a tick evaluated twice starts nothing twice, and nothing pending starts
    nothing. While a run of the job is in flight, none is added (it, or the next, takes the rest).
    A batch left pending by a failed run is requested again after RETRY_AFTER_S."""
    count, highest = _pending(ops_database)
    if not count or highest is None:
        return SkipReason("no pending review decisions")
    now = datetime.now(UTC)
    if _in_flight(context, now):
        return SkipReason(f"{count} pending decision(s); a {REVIEW_ACTIONS_JOB} run is in flight")
    seen, _, requested_at = (context.cursor or "0:").partition(":")
    last = int(seen) if seen.isdigit() else 0
    if highest > last:
        run_key = f"review-decisions:{highest}"
    elif requested_at and now.timestamp() - float(requested_at) < RETRY_AFTER_S:
        return SkipReason(f"{count} decision(s) up to id {highest} were requested; retried after "
                          f"{RETRY_AFTER_S:.0f} s if still pending")
    else:
        run_key = f"review-decisions:{highest}:retry:{int(now.timestamp())}"
    return SensorResult(run_requests=[RunRequest(run_key=run_key, tags={"ai_assets/pending_decisions": str(count),
                                                                        "ai_assets/max_decision_id": str(highest)})],
                        cursor=f"{highest}:{now.timestamp():.0f}")
