"""Overdue review items raised to the senior queue, with one alert each (ai_assets/review/escalation.py)."""

from datetime import UTC, datetime

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from ai_assets.resources.monitoring import MonitoringSettings
from ai_assets.resources.notifier import NotifierResource
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.review.escalation import escalate_overdue, review_overdue_alert, unalerted_escalations


@sensor(default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=60)
def review_escalation_sensor(context: SensorEvaluationContext, ops_database: OpsDatabaseResource,
                             notifier: NotifierResource, monitoring_settings: MonitoringSettings) -> SkipReason:
    """Every minute: items past their due time move to the senior queue, and a person hears of
    each once. No cursor: the database is the state (an item moves once, its alert is one row
    under the alerts table's unique key), so ticks that overlap or repeat send nothing twice.
    An item moved by a tick that died before alerting is alerted on the next. Notices still
    owed (a receiver was down) are retried."""
    now = datetime.now(UTC)
    db = ops_database.db()
    moved = escalate_overdue(db, now)
    lost = [item for item in unalerted_escalations(db, now) if item.id not in {m.id for m in moved}]
    dispatcher = notifier.dispatcher(db, context.log)
    alerts = [review_overdue_alert(item, now, review_url=monitoring_settings.review_url) for item in [*moved, *lost]]
    notified = sum(dispatcher.raise_(alert, now).notified for alert in alerts)
    retried = sum(r.sent for r in dispatcher.retry_unsent(now))
    if not moved and not lost:
        return SkipReason(f"no review item overdue; {retried} owed notice(s) delivered")
    if moved:
        context.log.info(f"{len(moved)} overdue review item(s) raised to the senior queue: "
                         f"{[item.id for item in moved]}")
    return SkipReason(f"{len(moved)} item(s) escalated, {len(lost)} earlier escalation(s) without an alert; "
                      f"{notified} alert(s) notified, {retried} owed notice(s) delivered")
