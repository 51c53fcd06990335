"""Event-driven ingestion: a run of the daily pipeline per day that received new files."""

import json
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ai_assets.defs.common import INGESTION_JOB, daily_partitions
from ai_assets.resources.landing_zone import LandingZone


def _landing_day(name: str) -> date | None:
    """The day a landing folder is for, or None if its name is not a YYYY-MM-DD date.
    `date.fromisoformat` alone also takes `20250303` and `2025-W10-1`: the round trip insists
    on the one spelling the upstream system writes."""
    try:
        day = date.fromisoformat(name)
    except ValueError:
        return None
    return day if day.isoformat() == name else None


FolderState = Literal["ready", "open", "ignored"]


def _folder_state(name: str, valid: set[str], last: str | None, today: date) -> FolderState:
    """ready: a partition; open: its day has not closed yet, so wait quietly; ignored: never a
    partition (not a date, before the first partition, or beyond tomorrow UTC)."""
    day = _landing_day(name)
    if day is None:
        return "ignored"
    if name in valid:
        return "ready"
    # Today's files arrive all day, and an upstream clock a little ahead may already write
    # tomorrow's folder; those become partitions once their day closes. Anything later is a
    # mistake that someone should see, not something to wait for.
    if last is not None and date.fromisoformat(last) < day <= today + timedelta(days=1):
        return "open"
    return "ignored"


def _ignored_note(ignored: list[str], last: str | None) -> str:
    return (f"{len(ignored)} landing folder(s) ignored, not a day of the partitions "
            f"({daily_partitions.get_first_partition_key()}..{last}) nor today or tomorrow UTC: {ignored}")


@sensor(job_name=INGESTION_JOB, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def landing_zone_sensor(context: SensorEvaluationContext, landing_zone: LandingZone):
    """Starts one run per day whose landing files changed since the last tick. The cursor keeps
    each day's file fingerprint; the run key repeats it, so a re-evaluated tick never launches
    the same work twice. Folders that can never be a partition are logged on every tick (their
    files would otherwise be lost silently) and never requested."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    valid = set(daily_partitions.get_partition_keys(dynamic_partitions_store=None))
    last = daily_partitions.get_last_partition_key()
    today = datetime.now(UTC).date()
    requests, ignored = [], []
    for day in landing_zone.days():
        scan = landing_zone.scan(day)
        if not scan.files and not scan.refused:  # a refused file is news too: its run's check alerts
            continue
        state = _folder_state(day, valid, last, today)
        if state == "ignored":
            ignored.append(day)
        if state != "ready":
            continue
        fingerprint = landing_zone.day_fingerprint(day)
        if seen.get(day) == fingerprint:
            continue
        seen[day] = fingerprint
        requests.append(RunRequest(run_key=f"{day}:{fingerprint}", partition_key=day,
                                   tags={"ai_assets/landing_fingerprint": fingerprint}))
    if ignored:
        context.log.warning(_ignored_note(ignored, last))
    if not requests:
        return SkipReason("no new or changed landing files" + (f"; {_ignored_note(ignored, last)}" if ignored else ""))
    return SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
