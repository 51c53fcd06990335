"""Layer-1 asset checks: blocking where bad data must not flow on, warnings where a person
should look. Every check on a partitioned asset takes `partitions_def` so it reads its own day."""


from datetime import date, timedelta

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    DefaultSensorStatus,
    MetadataValue,
    asset_check,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
)

from ai_assets.defs.common import daily_partitions
from ai_assets.defs.ingestion.assets import raw_messages, records_by_file, validate_messages
from ai_assets.ingestion.accounting import balance, duplicate_locations, schema_report, volume_verdict
from ai_assets.ingestion.pii import mask_pii
from ai_assets.resources.ingestion_policy import IngestionPolicy
from ai_assets.resources.landing_zone import LandingZone

SCHEMA_MATCHES_CONTRACT = "schema_matches_contract"
VOLUME_WITHIN_TRAILING_BAND = "volume_within_trailing_band"
QUARANTINE_SHARE_WITHIN_CEILING = "quarantine_share_within_ceiling"
COUNTS_BALANCE = "counts_balance"
QUARANTINE_ROWS_EXPLAINED = "quarantine_rows_explained"
LANDING_FILES_ALL_READ = "landing_files_all_read"
# Lists in check metadata are cut: a day of 10,000 invented fields must not flood the event log.
MAX_LISTED = 100
# The day's messages must be ingested by 03:00 UTC the next morning.
FRESHNESS_DEADLINE_CRON = "0 3 * * *"


@asset_check(asset=raw_messages, name=SCHEMA_MATCHES_CONTRACT, partitions_def=daily_partitions)
def schema_matches_contract(raw_messages: pd.DataFrame) -> AssetCheckResult:
    """Warns when the upstream system adds, renames or drops a field: its rows may still be
    valid, but someone should update the contract or talk to the producer."""
    report = schema_report(records_by_file(raw_messages))
    return AssetCheckResult(
        passed=report.matches_contract,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "schema_fingerprint": report.fingerprint,
            "fields_outside_contract": MetadataValue.json(report.added[:MAX_LISTED]),
            "fields_outside_contract_count": len(report.added),
            "contract_fields_missing_by_file": MetadataValue.json(report.missing_by_file),
        },
    )


@asset_check(asset=raw_messages, name=LANDING_FILES_ALL_READ, partitions_def=daily_partitions)
def landing_files_all_read(context: AssetCheckExecutionContext, landing_zone: LandingZone) -> AssetCheckResult:
    """Fails when the day's landing folder holds something that was refused, not read: a
    symlink, a FIFO, a hard link, a file over the size limit, or a day folder that is itself a
    symlink. Its messages are in no asset, so someone must look; the rest of the day flows on."""
    refused = landing_zone.scan(context.partition_key).refused
    by_reason: dict[str, int] = {}
    for r in refused:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    return AssetCheckResult(
        passed=not refused,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "refused": len(refused),
            "refused_by_reason": MetadataValue.json(dict(sorted(by_reason.items()))),
            # A file name is upstream input too: masked like any text before it is shown.
            "examples": MetadataValue.json([{"name": mask_pii(r.name)[0][:200], "reason": r.reason}
                                            for r in refused[:MAX_LISTED]]),
        },
    )


@asset_check(asset=raw_messages, name=VOLUME_WITHIN_TRAILING_BAND, partitions_def=daily_partitions)
def volume_within_trailing_band(context: AssetCheckExecutionContext, raw_messages: pd.DataFrame,
                                landing_zone: LandingZone,
                                ingestion_policy: IngestionPolicy) -> AssetCheckResult:
    """Warns when a day's volume is far from the trailing days' median: a stalled or
    duplicating upstream feed shows here first. The baseline is read from the landing zone,
    so the verdict does not depend on which days happened to be processed first."""
    day = date.fromisoformat(context.partition_key)
    trailing_days = [(day - timedelta(days=i)).isoformat()
                     for i in range(1, ingestion_policy.trailing_days + 1)]
    trailing = [landing_zone.count_lines(d) for d in trailing_days]
    verdict = volume_verdict(len(raw_messages), trailing, ingestion_policy.volume_low,
                             ingestion_policy.volume_high)
    return AssetCheckResult(
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN,
        description=verdict.reason,
        metadata={"rows": verdict.rows, "trailing_median": verdict.baseline or 0.0,
                  "ratio": verdict.ratio if verdict.ratio is not None else 1.0,
                  "trailing_rows": MetadataValue.json(dict(zip(trailing_days, trailing, strict=True)))},
    )


def _locations(frame: pd.DataFrame) -> list[tuple[str, int]]:
    return list(zip(frame["source_file"].astype(str), frame["line"].astype(int), strict=True))


def _blocking_validation_check(name: str):
    """A blocking check on validated_messages that also reads the same day's raw and
    quarantined rows: a failure stops everything downstream of that day."""
    return asset_check(
        asset="validated_messages",
        name=name,
        partitions_def=daily_partitions,
        blocking=True,
        additional_ins={"raw_messages": AssetIn("raw_messages"),
                        "quarantined_messages": AssetIn("quarantined_messages")},
    )


@_blocking_validation_check(QUARANTINE_SHARE_WITHIN_CEILING)
def quarantine_share_within_ceiling(raw_messages: pd.DataFrame, quarantined_messages: pd.DataFrame,
                                    ingestion_policy: IngestionPolicy) -> AssetCheckResult:
    """Stops the day at this layer when too much of it was rejected: a broken feed should
    page someone, not reach the model with a biased remainder."""
    rows_in = len(raw_messages)
    share = len(quarantined_messages) / rows_in if rows_in else 0.0
    return AssetCheckResult(
        passed=share <= ingestion_policy.quarantine_ceiling,
        severity=AssetCheckSeverity.ERROR,
        description=f"{share:.2%} quarantined, ceiling {ingestion_policy.quarantine_ceiling:.0%}",
        metadata={"quarantine_share": round(share, 6), "ceiling": ingestion_policy.quarantine_ceiling,
                  "quarantined": len(quarantined_messages), "rows_in": rows_in},
    )


@_blocking_validation_check(COUNTS_BALANCE)
def counts_balance(validated_messages: pd.DataFrame, raw_messages: pd.DataFrame,
                   quarantined_messages: pd.DataFrame) -> AssetCheckResult:
    """Every raw line is accounted for exactly once: validated, quarantined or a duplicate."""
    raw_rows = list(zip(raw_messages["source_file"], raw_messages["line"].astype(int),
                        raw_messages["raw"], raw_messages["parse_error"], strict=True))
    result = balance(_locations(raw_messages), duplicate_locations(raw_rows),
                     _locations(validated_messages), _locations(quarantined_messages))
    return AssetCheckResult(
        passed=result.balanced,
        severity=AssetCheckSeverity.ERROR,
        metadata={"rows_in": result.rows_in, "validated": result.validated,
                  "quarantined": result.quarantined, "duplicates": result.duplicates,
                  "unaccounted": MetadataValue.json([list(x) for x in result.unaccounted[:20]]),
                  "counted_twice": MetadataValue.json([list(x) for x in result.counted_twice[:20]])},
    )


@asset_check(asset="quarantined_messages", name=QUARANTINE_ROWS_EXPLAINED,
             partitions_def=daily_partitions)
def quarantine_rows_explained(quarantined_messages: pd.DataFrame) -> AssetCheckResult:
    """Each quarantined row says where it came from and why, and shows no unmasked PII."""
    q = quarantined_messages
    unexplained = int((q["reason"].isna() | (q["reason"] == "") | q["source_file"].isna()
                       | (q["line"] < 1)).sum())
    leaking = int(sum(1 for text in q["excerpt"].fillna("") if mask_pii(text)[1]))
    return AssetCheckResult(
        passed=unexplained == 0 and leaking == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"rows": len(q), "without_reason_or_location": unexplained,
                  "excerpts_with_unmasked_pii": leaking},
    )


freshness_checks = build_time_partition_freshness_checks(
    assets=[raw_messages, validate_messages], deadline_cron=FRESHNESS_DEADLINE_CRON, timezone="UTC")
freshness_sensor = build_sensor_for_freshness_checks(
    freshness_checks=freshness_checks, name="ingestion_freshness_sensor",
    default_status=DefaultSensorStatus.RUNNING)

partition_checks = [schema_matches_contract, landing_files_all_read, volume_within_trailing_band,
                    quarantine_share_within_ceiling, counts_balance, quarantine_rows_explained]
