"""Ingestion assets: thin Dagster wiring around `ai_assets.ingestion`."""


import time
from collections import Counter
from datetime import date

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetOut,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from ai_assets.defs.common import INGESTION_GROUP, column_schema, daily_partitions
from ai_assets.ingestion.accounting import schema_report
from ai_assets.ingestion.landing_files import LandingFileRefused
from ai_assets.ingestion.parsing import PARSE_REASONS, decode_record, parse_lines
from ai_assets.ingestion.validation import validate_partition
from ai_assets.resources.ingestion_policy import IngestionPolicy
from ai_assets.resources.landing_zone import LandingZone
from ai_assets.schemas import QUARANTINE_COLUMNS, VALIDATED_COLUMNS

GROUP = INGESTION_GROUP
# A day with thousands of invented field names must not flood the event log.
MAX_FIELDS_SHOWN = 100
RAW_COLUMNS = {
    "source_file": "string (landing file name)",
    "line": "int (1-based)",
    "raw": "string (the line as received; invalid UTF-8 bytes replaced; the first 4 KB of a line over 64 KiB)",
    "parse_error": f"string or null ({' | '.join(PARSE_REASONS)})",
}


def records_by_file(raw: pd.DataFrame) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in raw.itertuples(index=False):
        out.setdefault(row.source_file, [])
        if not isinstance(row.parse_error, str):
            record, _ = decode_record(row.raw)
            if record is not None:
                out[row.source_file].append(record)
    return out


@asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    metadata={"dagster/column_schema": column_schema(RAW_COLUMNS)},
)
def raw_messages(context: AssetExecutionContext, landing_zone: LandingZone) -> Output[pd.DataFrame]:
    """Every line of the day's landing files, as received: the audit copy that later layers
    and any reprocessing start from. Nothing is dropped here; unparseable lines carry a reason."""
    started = time.perf_counter()
    day = context.partition_key
    rows, records, field_types = [], {}, Counter()
    scan = landing_zone.scan(day)
    refused = {r.name: r.reason for r in scan.refused}
    files = []
    total_bytes = 0
    empty_files = []
    for path in scan.files:
        try:
            data = landing_zone.read(path)
        except LandingFileRefused as exc:  # swapped for a symlink, a FIFO or a larger file since the scan
            refused[exc.name] = exc.reason
            continue
        files.append(path)
        total_bytes += len(data)
        if not data:
            empty_files.append(path.name)
        parsed = parse_lines(path.name, data)
        rows += parsed.rows
        records[path.name] = [r for r in parsed.records if r is not None]
        field_types += parsed.key_types
    frame = pd.DataFrame([r.__dict__ for r in rows], columns=list(RAW_COLUMNS))
    frame = frame.astype({"source_file": "string", "line": "int64", "raw": "string", "parse_error": "string"})
    schema = schema_report(records)
    parse_errors = Counter(e for e in frame["parse_error"].dropna())
    if refused:
        # Not read, so nothing of them is in any asset: the check `landing_files_all_read` alerts.
        context.log.warning(f"{len(refused)} landing entries refused for {day}: {dict(sorted(refused.items()))}")
    if not files:
        context.log.warning(f"no landing files for {day} under {landing_zone.day_dir(day)}")
    return Output(frame, metadata={
        "files": len(files),
        "empty_files": MetadataValue.json(empty_files),
        "refused_files": len(refused),
        "refused_by_reason": MetadataValue.json(dict(sorted(Counter(refused.values()).items()))),
        "rows": len(frame),
        "bytes": total_bytes,
        "parse_errors": MetadataValue.json(dict(sorted(parse_errors.items()))),
        "schema_fingerprint": schema.fingerprint,
        "observed_fields": MetadataValue.json(schema.observed[:MAX_FIELDS_SHOWN]),
        # "field:jsontype" -> rows: where a wrong type or a renamed field comes from.
        "observed_field_types": MetadataValue.json(dict(sorted(field_types.items())[:MAX_FIELDS_SHOWN])),
        "observed_field_count": len(schema.observed),
        "dagster/row_count": len(frame),
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    })


@multi_asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    outs={
        "validated_messages": AssetOut(
            kinds={"pandas", "parquet"},
            description="Messages that passed the contract: NFKC-normalised, whitespace-collapsed, "
                        "PII-masked, de-duplicated, sorted by time. The only input models ever see.",
            metadata={"dagster/column_schema": column_schema(VALIDATED_COLUMNS)},
        ),
        "quarantined_messages": AssetOut(
            kinds={"pandas", "parquet"},
            description="Rows that failed parsing or the GX suite, with file, line, stage and the "
                        "expectation that failed, for an operator to fix upstream and replay.",
            metadata={"dagster/column_schema": column_schema(QUARANTINE_COLUMNS)},
        ),
    },
)
def validate_messages(context: AssetExecutionContext, raw_messages: pd.DataFrame,
                      ingestion_policy: IngestionPolicy):
    """Validate one day's raw rows with the Great Expectations suite and split them."""
    started = time.perf_counter()
    day = date.fromisoformat(context.partition_key)
    outcome = validate_partition(raw_messages, day, ingestion_policy.max_text_chars)
    rows_in = len(raw_messages)
    n_quarantined = len(outcome.quarantined)
    by_reason = Counter(r.split("; ")[0] for r in outcome.quarantined["reason"])
    shared = {
        "rows_in": rows_in,
        "validated": len(outcome.validated),
        "quarantined": n_quarantined,
        "duplicates": outcome.duplicates,
        "quarantine_share": round(n_quarantined / rows_in, 6) if rows_in else 0.0,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    yield Output(outcome.validated, output_name="validated_messages", metadata={
        **shared,
        "dagster/row_count": len(outcome.validated),
        "pii_masked": MetadataValue.json(dict(sorted(outcome.pii_masked.items()))),
        "gx_suite": MetadataValue.json(outcome.suite_summary),
    })
    yield Output(outcome.quarantined, output_name="quarantined_messages", metadata={
        **shared,
        "dagster/row_count": n_quarantined,
        "quarantined_by_reason": MetadataValue.json(dict(sorted(by_reason.items()))),
    })
