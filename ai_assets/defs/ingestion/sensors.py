"""Event-driven ingestion: a run per day that received new files, a schedule as safety net."""


import json

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    sensor,
)

from ai_assets.defs.actions.assets import GROUP as ACTIONS_GROUP
from ai_assets.defs.enrichment.assets import enriched_messages
from ai_assets.defs.ingestion.assets import GROUP
from ai_assets.defs.ingestion.checks import freshness_checks
from ai_assets.defs.partitions import daily_partitions
from ai_assets.resources.landing_zone import LandingZone

ingestion_job = define_asset_job(
    "ingestion_job",
    # Freshness checks look at the latest partition, not the run's: their own sensor runs them.
    # (Materializing from an asset page in the UI may include them; they are read-only.)
    # Enrichment and actions run in the same run as validation: only then do the blocking
    # checks on validated_messages and enriched_messages stop a bad day from reaching the
    # models and the customers.
    selection=(AssetSelection.groups(GROUP, ACTIONS_GROUP) | AssetSelection.assets(enriched_messages))
    - AssetSelection.checks(*freshness_checks),
    partitions_def=daily_partitions,
    description="Landing files of one day to validated, enriched and acted-on messages, outbox delivered, "
                "with all checks.",
)

# 01:30 UTC: re-runs yesterday even if no sensor fired, so a silent upstream shows as a
# zero-volume day with a failed volume check instead of a missing partition.
daily_ingestion_schedule = build_schedule_from_partitioned_job(
    ingestion_job, hour_of_day=1, minute_of_hour=30,
    default_status=DefaultScheduleStatus.RUNNING,
)


@sensor(job=ingestion_job, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def landing_zone_sensor(context: SensorEvaluationContext, landing_zone: LandingZone):
    """Starts one run per day whose landing files changed since the last tick. The cursor keeps
    each day's file fingerprint; the run key repeats it, so a re-evaluated tick never launches
    the same work twice."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    valid = set(daily_partitions.get_partition_keys(dynamic_partitions_store=None))
    last = daily_partitions.get_last_partition_key()
    requests, outside = [], []
    for day in landing_zone.days():
        if not landing_zone.files(day):
            continue
        fingerprint = landing_zone.day_fingerprint(day)
        if seen.get(day) == fingerprint:
            continue
        if day not in valid:
            # Today's files wait quietly for the day to close; anything else never will.
            if not (last and len(day) == 10 and day > last):
                outside.append(day)
            continue
        seen[day] = fingerprint
        requests.append(RunRequest(run_key=f"{day}:{fingerprint}", partition_key=day,
                                   tags={"ai_assets/landing_fingerprint": fingerprint}))
    if outside:
        context.log.warning(f"landing folders outside the partition range, ignored: {outside}")
    if not requests:
        return SkipReason("no new or changed landing files")
    return SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
