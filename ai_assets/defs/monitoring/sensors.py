"""The monitoring area's sensors: resolved cases landing start the quality run of their day;
failed checks and failed runs become alerts a person receives once."""

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetCheckEvaluation,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ai_assets.defs.common import LABEL_FEEDBACK_JOB, daily_partitions
from ai_assets.monitoring.alerts import Alert, asset_check_alert, run_failure_alert
from ai_assets.resources.landing_zone import RESOLVED_CASES_DIR, LandingZone
from ai_assets.resources.notifier import NotifierResource
from ai_assets.resources.ops_database import OpsDatabaseResource


def labelled_day(folder: str) -> str | None:
    """The message day whose labels a resolved-cases folder holds: labels arrive the day after
    their messages, so `resolved_cases/2025-03-04/` completes the partition 2025-03-03. None for
    a folder that is not a YYYY-MM-DD date."""
    try:
        arrived = date.fromisoformat(folder)
    except ValueError:
        return None
    return (arrived - timedelta(days=1)).isoformat() if arrived.isoformat() == folder else None


@sensor(job_name=LABEL_FEEDBACK_JOB, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=60)
def resolved_cases_sensor(context: SensorEvaluationContext, landing_zone: LandingZone):
    """One quality run per day whose resolved cases arrived or changed: the cursor keeps each
    folder's fingerprint and the run key repeats it, so a tick evaluated twice starts nothing
    twice. A folder that maps to no partition is reported in the skip reason, never lost."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    valid = set(daily_partitions.get_partition_keys(dynamic_partitions_store=None))
    requests, ignored = [], []
    for folder in landing_zone.days(RESOLVED_CASES_DIR):
        scan = landing_zone.scan(folder, RESOLVED_CASES_DIR)
        if not scan.files and not scan.refused:
            continue
        day = labelled_day(folder)
        if day not in valid:
            ignored.append(folder)
            continue
        fingerprint = landing_zone.day_fingerprint(folder, RESOLVED_CASES_DIR)
        if seen.get(folder) == fingerprint:
            continue
        seen[folder] = fingerprint
        requests.append(RunRequest(run_key=f"resolved:{day}:{fingerprint}", partition_key=day,
                                   tags={"ai_assets/resolved_fingerprint": fingerprint}))
    note = f"; {len(ignored)} resolved-cases folder(s) map to no partition: {ignored}" if ignored else ""
    if not requests:
        return SkipReason("no new or changed resolved cases" + note)
    if note:
        context.log.warning(note[2:])
    return SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


# --------------------------------------------------------------------------- alerts

PAGE = 200
# A check planned by a run that then died never completes; past this age it stops holding the cursor.
STALE_PLANNED_S = 6 * 3600
# A sensor's first tick (no cursor: a new deployment) alerts on the last day's evaluations only,
# not on every failure in the instance's history.
FIRST_TICK_LOOKBACK_S = 24 * 3600


def _number(metadata: dict, key: str) -> float | None:
    value = metadata.get(key)
    value = getattr(value, "value", value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def check_alert(evaluation: AssetCheckEvaluation, run_id: str | None, now: datetime) -> Alert:
    """The alert a check evaluation stands for. A check may name its own alert window in
    `alert_window` (the monthly budget: the month) and its figure, threshold and direction in
    `figure`, `threshold` and `higher_is_worse`, so the alert says what crossed what."""
    metadata = dict(evaluation.metadata)
    window = metadata.get("alert_window")
    window = getattr(window, "value", window)
    direction = metadata.get("higher_is_worse")
    direction = getattr(direction, "value", direction)
    alert = asset_check_alert(
        evaluation.asset_key.to_user_string(), evaluation.check_name,
        severity=evaluation.severity.value, description=evaluation.description or "no description",
        partition=evaluation.partition, now=now, figure=_number(metadata, "figure"),
        threshold=_number(metadata, "threshold"), higher_is_worse=direction is not False, run_id=run_id)
    return dataclasses.replace(alert, window=str(window)) if window else alert


def completed_check_executions(instance, check_keys, after: int, now: float,
                               not_before: float = 0.0) -> tuple[list, int]:
    """Check executions completed since execution id `after` (and created at `not_before` or
    later), oldest first, and the new cursor. Ids are given when a check is planned and the row
    completes later, so the cursor stops below the oldest execution still planned: nothing
    finishing late is skipped."""
    completed, planned = [], []
    for key in check_keys:
        cursor = None
        while True:
            page = instance.event_log_storage.get_asset_check_execution_history(key, limit=PAGE, cursor=cursor)
            fresh = [r for r in page if r.id > after]
            for record in (r for r in fresh if r.create_timestamp >= not_before):
                if record.status in (AssetCheckExecutionRecordStatus.SUCCEEDED,
                                     AssetCheckExecutionRecordStatus.FAILED) and record.evaluation:
                    completed.append(record)
                elif (record.status == AssetCheckExecutionRecordStatus.PLANNED
                      and now - record.create_timestamp < STALE_PLANNED_S):
                    planned.append(record.id)
            if len(fresh) < PAGE:
                break
            cursor = page[-1].id
    high = max((r.id for r in completed), default=after)
    if planned:
        high = min(high, min(planned) - 1)
    return sorted((r for r in completed if r.id <= high), key=lambda r: r.id), high


@sensor(default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def check_alert_sensor(context: SensorEvaluationContext, notifier: NotifierResource,
                       ops_database: OpsDatabaseResource):
    """Every asset check evaluation, of any severity, since the last tick: a failure raises its
    alert (de-duplicated per check and window in the operations database), a pass resolves it.
    A failed check does not fail its run, so a run-failure sensor alone would never hear of it.
    Notices still owed (a receiver was down) are retried on every tick."""
    after = int(context.cursor) if context.cursor else 0
    now = datetime.now(UTC)
    check_keys = sorted(context.repository_def.asset_graph.asset_check_keys, key=str)
    not_before = 0.0 if context.cursor else now.timestamp() - FIRST_TICK_LOOKBACK_S
    records, cursor = completed_check_executions(context.instance, check_keys, after, now.timestamp(), not_before)
    dispatcher = notifier.dispatcher(ops_database.db(), context.log)
    raised = resolved = 0
    for record in records:
        evaluation = record.evaluation
        alert = check_alert(evaluation, record.run_id, now)
        if evaluation.passed:
            resolved += dispatcher.resolve_alert(alert, now).notified
        else:
            raised += dispatcher.raise_(alert, now).notified
    retried = sum(r.sent for r in dispatcher.retry_unsent(now))
    context.update_cursor(str(cursor))
    return SkipReason(f"{len(records)} check evaluation(s): {raised} alert(s) and {resolved} resolution(s) "
                      f"notified, {retried} owed notice(s) delivered")


@run_failure_sensor(default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def run_failure_alert_sensor(context: RunFailureSensorContext, notifier: NotifierResource,
                             ops_database: OpsDatabaseResource) -> None:
    """A failed run of any job of this code location: one alert per job and partition (a retry
    that fails again is the same condition), linked to the run."""
    run = context.dagster_run
    message = context.failure_event.message or "the run failed"
    alert = run_failure_alert(run.job_name, run.run_id, message=message, partition=run.tags.get("dagster/partition"),
                              now=datetime.now(UTC))
    notifier.dispatcher(ops_database.db(), context.log).raise_(alert)
