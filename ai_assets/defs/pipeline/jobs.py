"""The daily pipeline as one job: what the landing-zone sensor, the schedule, a backfill and
`ai-assets demo` all run for a day."""

from dagster import AssetSelection, DefaultScheduleStatus, build_schedule_from_partitioned_job, define_asset_job

from ai_assets.defs.common import (
                                   ACTIONS_GROUP,
                                   DAILY_MONITORING_ASSETS,
                                   ENRICHMENT_GROUP,
                                   FRESHNESS_CHECK_KEYS,
                                   INGESTION_GROUP,
                                   INGESTION_JOB,
                                   daily_partitions,
)

ingestion_job = define_asset_job(
    INGESTION_JOB,
    # Freshness checks look at the latest partition, not the run's: their own sensor runs them.
    # (Materializing from an asset page in the UI may include them; they are read-only.)
    # Enrichment and actions run in the same run as validation: only then do the blocking
    # checks on validated_messages and enriched_messages stop a bad day from reaching the
    # models and the customers. The day's monitoring (estimated quality, drift, metrics) runs
    # with it, so every day has its figures; quality against labels waits for the labels.
    selection=(AssetSelection.groups(INGESTION_GROUP, ENRICHMENT_GROUP, ACTIONS_GROUP)
               | AssetSelection.assets(*DAILY_MONITORING_ASSETS))
    - AssetSelection.checks(*FRESHNESS_CHECK_KEYS),
    partitions_def=daily_partitions,
    description="Landing files of one day to validated, enriched and acted-on messages, outbox delivered, "
                "with all checks and the day's monitoring.",
)

# 01:30 UTC: re-runs yesterday even if no sensor fired, so a silent upstream shows as a
# zero-volume day with a failed volume check instead of a missing partition.
daily_ingestion_schedule = build_schedule_from_partitioned_job(
    ingestion_job, hour_of_day=1, minute_of_hour=30,
    default_status=DefaultScheduleStatus.RUNNING,
)
