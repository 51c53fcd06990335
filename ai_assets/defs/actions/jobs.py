"""The outbox sweep: what a day's run could not deliver (a receiver was down) is retried
every 10 minutes across all days, without anyone re-running a partition."""

from dagster import DefaultScheduleStatus, Failure, OpExecutionContext, ScheduleDefinition, job, op

from ai_assets.ops_db import AuditContext, pipeline_actor
from ai_assets.resources.actions import ActionSettings
from ai_assets.resources.ops_database import OpsDatabaseResource


@op
def deliver_pending_outbox(context: OpExecutionContext, action_settings: ActionSettings,
                           ops_database: OpsDatabaseResource) -> None:
    """Deliver every due outbox row; a new dead letter fails the run (the alert)."""
    report = action_settings.deliver(ops_database.db(), AuditContext(pipeline_actor(context.run_id), context.run_id))
    context.log.info(f"outbox sweep: attempted {report.attempted}, delivered {report.delivered}, "
                     f"failed (will retry) {report.failed}, dead {report.dead}")
    if report.dead:
        raise Failure(f"{report.dead} outbox rows became dead letters: `ai-assets outbox status` lists them",
                      metadata={"dead": report.dead, "delivered": report.delivered})


@job(description="Retry due outbox e-mail and events of every day.")
def outbox_retry_job() -> None:
    deliver_pending_outbox()


outbox_retry_schedule = ScheduleDefinition(job=outbox_retry_job, cron_schedule="*/10 * * * *",
                                           default_status=DefaultScheduleStatus.RUNNING)
