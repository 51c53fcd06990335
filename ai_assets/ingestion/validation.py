"""Validation of parsed landing rows with a Great Expectations 1.x suite, run directly.

The suite is the contract in executable form. Rows it rejects are quarantined with the
names of the expectations they failed; the rest are normalised, PII-masked and sorted so
that the same raw rows always give the same bytes.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd

from ai_assets.ingestion.identifiers import ID_PATTERN, ID_REGEX, id_pii_kind, ids_pii_label
from ai_assets.ingestion.normalise import normalise_text
from ai_assets.ingestion.parsing import EXCERPT_CHARS, decode_record, record_identity
from ai_assets.ingestion.pii import mask_pii
from ai_assets.schemas import CHANNELS, MAX_TEXT_CHARS, MIN_TEXT_CHARS

# GX reports anonymous usage statistics by default; this machine has no internet.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

SUITE_NAME = "validated_messages"
ROW = "_row"


def build_suite(day: date, max_text_chars: int = MAX_TEXT_CHARS) -> gx.ExpectationSuite:
    """The message contract for one partition day, as GX expectations (order = report order)."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1) - timedelta(microseconds=1)
    e = gx.expectations
    expectations = [
        *(e.ExpectColumnValuesToNotBeNull(column=c)
          for c in ("message_id", "customer_id", "channel", "received_at", "text")),
        *(e.ExpectColumnValuesToBeOfType(column=c, type_="str")
          for c in ("message_id", "customer_id", "received_at", "text")),
        # Ids reach cases, the outbox, webhooks, the audit log and the e-mail recipient: short
        # tokens only (see ingestion/identifiers.py), and never a card number or an IBAN.
        *(e.ExpectColumnValuesToMatchRegex(column=c, regex=ID_REGEX, meta={"means": "id token, <= 64 chars"})
          for c in ("message_id", "customer_id")),
        e.ExpectColumnValuesToBeNull(column="pii_in_ids", meta={"means": "no card number or IBAN as an id"}),
        e.ExpectColumnValuesToBeUnique(column="message_id"),
        e.ExpectColumnValuesToNotBeNull(column="received_at_utc", meta={"means": "ISO-8601 with offset"}),
        e.ExpectColumnValuesToBeBetween(column="received_at_utc", min_value=pd.Timestamp(start),
                                        max_value=pd.Timestamp(end)),
        e.ExpectColumnValuesToBeInSet(column="channel", value_set=list(CHANNELS)),
        e.ExpectColumnValueLengthsToBeBetween(column="text_normalised", min_value=MIN_TEXT_CHARS,
                                              max_value=max_text_chars),
    ]
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)


def expectation_label(config) -> str:
    return f"{config.type}({config.kwargs.get('column')})"


def run_suite(frame: pd.DataFrame, suite: gx.ExpectationSuite):
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas("landing").add_dataframe_asset("messages")
    definition = batch.add_batch_definition_whole_dataframe("partition")
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=SUITE_NAME, data=definition, suite=suite))
    return validation.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]},
    )


def parse_timestamp(value: object) -> pd.Timestamp | None:
    """An ISO-8601 time with an offset, in UTC; None for anything else (no guessed zone)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # the contract requires an offset; a guess would shift days
        return None
    return pd.Timestamp(parsed).tz_convert("UTC")


def excerpt(raw: str) -> str:
    """The start of a rejected line for people to read: normalised, masked, then cut. Masking
    only shortens text, so four times the excerpt length is ample input and keeps a 5,000
    character line from costing a full normalisation."""
    masked, _ = mask_pii(normalise_text(raw[: EXCERPT_CHARS * 4]))
    return masked[:EXCERPT_CHARS]


@dataclass
class ValidationOutcome:
    validated: pd.DataFrame
    quarantined: pd.DataFrame
    duplicates: int
    suite_summary: dict
    pii_masked: Counter[str]


def quarantine_row(row, stage: str, reason: str, message_id: object = None) -> dict:
    """A quarantine record; `row` is anything with source_file, line and raw."""
    # Only an id the contract would accept is kept: a rejected one may be 100,000 characters,
    # carry a line break or be a card number (the excerpt shows it masked).
    well_formed = isinstance(message_id, str) and ID_PATTERN.match(message_id) and not id_pii_kind(message_id)
    return {"source_file": row.source_file, "line": int(row.line), "stage": stage, "reason": reason,
            "message_id": message_id if well_formed else None, "excerpt": excerpt(row.raw)}


def validate_partition(raw: pd.DataFrame, day: date, max_text_chars: int = MAX_TEXT_CHARS) -> ValidationOutcome:
    """raw_messages rows -> validated rows, quarantine rows and exact-duplicate count."""
    quarantine: list[dict] = []
    seen: set[str] = set()
    duplicates = 0
    rows: list[dict] = []
    for row in raw.itertuples(index=False):
        if isinstance(row.parse_error, str):
            quarantine.append(quarantine_row(row, "parse", row.parse_error))
            continue
        record, error = decode_record(row.raw)
        if record is None:  # marked parsed upstream but does not decode (a hand-edited partition)
            quarantine.append(quarantine_row(row, "parse", error or "invalid_json"))
            continue
        identity = record_identity(record)
        if identity in seen:  # the same record delivered again: drop, count, report
            duplicates += 1
            continue
        seen.add(identity)
        text = record.get("text")
        rows.append({
            ROW: len(rows),
            "message_id": record.get("message_id"),
            "customer_id": record.get("customer_id"),
            "pii_in_ids": ids_pii_label(record.get("message_id"), record.get("customer_id")),
            "channel": record.get("channel"),
            "received_at": record.get("received_at"),
            "received_at_utc": parse_timestamp(record.get("received_at")),
            "text": text,
            "text_normalised": normalise_text(text) if isinstance(text, str) else None,
            "source_file": row.source_file,
            "line": int(row.line),
            "raw": row.raw,
        })
    frame = pd.DataFrame(rows, columns=[ROW, "message_id", "customer_id", "pii_in_ids", "channel", "received_at",
                                        "received_at_utc", "text", "text_normalised", "source_file",
                                        "line", "raw"])
    frame["received_at_utc"] = pd.to_datetime(frame["received_at_utc"], utc=True)
    for column in ("message_id", "customer_id", "pii_in_ids", "channel", "received_at", "text", "text_normalised"):
        frame[column] = frame[column].astype(object)

    failures: dict[int, list[str]] = {}
    summary: dict = {"success": True, "evaluated_expectations": 0, "unsuccessful_expectations": 0,
                     "unexpected_by_expectation": {}}
    if len(frame):
        result = run_suite(frame, build_suite(day, max_text_chars))
        stats = result.statistics
        summary = {"success": bool(result.success),
                   "evaluated_expectations": int(stats["evaluated_expectations"]),
                   "unsuccessful_expectations": int(stats["unsuccessful_expectations"]),
                   "unexpected_by_expectation": {}}
        for check in result.results:
            label = expectation_label(check.expectation_config)
            if check.exception_info and check.exception_info.get("raised_exception"):
                raise RuntimeError(f"expectation {label} raised: {check.exception_info}")
            indices = [item[ROW] for item in check.result.get("unexpected_index_list") or []]
            summary["unexpected_by_expectation"][label] = len(indices)
            for index in indices:
                failures.setdefault(int(index), []).append(label)

    for index in sorted(failures):
        row = frame.iloc[index]
        quarantine.append(quarantine_row(row, "validate", "; ".join(failures[index]), row.message_id))

    good = frame[~frame[ROW].isin(list(failures))]
    pii_total: Counter[str] = Counter()
    masked_texts, masked_counts = [], []
    for text in good["text_normalised"]:
        masked, counts = mask_pii(text)
        masked_texts.append(masked)
        masked_counts.append(sum(counts.values()))
        pii_total += counts
    validated = pd.DataFrame({
        "message_id": good["message_id"].astype("string"),
        "customer_id": good["customer_id"].astype("string"),
        "channel": good["channel"].astype("string"),
        "received_at": good["received_at_utc"],
        "text": pd.Series(masked_texts, index=good.index, dtype="string"),
        "pii_masked": pd.Series(masked_counts, index=good.index, dtype="int64"),
        "source_file": good["source_file"].astype("string"),
        "line": good["line"].astype("int64"),
    }).sort_values(["received_at", "message_id"], kind="stable").reset_index(drop=True)
    quarantined = pd.DataFrame(quarantine, columns=["source_file", "line", "stage", "reason",
                                                    "message_id", "excerpt"])
    quarantined = quarantined.astype({"source_file": "string", "line": "int64", "stage": "string",
                                      "reason": "string", "message_id": "string", "excerpt": "string"})
    quarantined = quarantined.sort_values(["source_file", "line"], kind="stable").reset_index(drop=True)
    return ValidationOutcome(validated, quarantined, duplicates, summary, pii_total)
