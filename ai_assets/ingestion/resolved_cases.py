"""The resolved-cases feed: the category an agent finally set, validated like any other source.

The feed is how accuracy is measured in production, so a bad label is worse than none: it
would make a good model look bad, or hide a bad one. Every line therefore ends in exactly one
place, and the counts say where:

  labelled      the one label kept for a message id
  quarantined   unusable lines, with a machine-readable reason (rows of QUARANTINE_COLUMNS,
                PII-masked excerpt, the id kept only when it is a well-formed, PII-free id)
  duplicate     the same message id with a category already seen for it (at-least-once delivery)
  conflicting_label
                the same message id with a *different* category: the agent changed their mind
                (or two systems disagree). The label with the latest `resolved_at` wins — a case's
                final category is the last one set — ties going to the later line of the feed
                (the feed is appended in resolution order). Each overruled category counts once
                here; its lines are kept in `superseded` so a person can see what was overruled.

so that `lines_in == labelled + quarantined + duplicates + conflicts`, checked line by line
(`ResolvedFeed.balance`), not only as a sum.

Layout (written by the simulator, and by the upstream CRM export in production): the labels of
the messages received on day D arrive a day later in `resolved_cases/<D+1>/` (the simulator
writes `resolved-<D>.jsonl`; every `*.jsonl` of the folder is read), rows
`{"message_id", "category", "resolved_at"}`. Valid categories are the 77 BANKING77 intents
and `out_of_scope` (an agent may mark a message as not a banking request) — exactly those
spellings: a label is compared with the model's answer character for character, so an alias
such as `oos` is refused rather than guessed at.

The feed is parsed by the same total parser as the landing files (`parsing.parse_lines`: size,
UTF-8, nesting, number length, duplicate keys, lone surrogates) and scanned and read with the
same guards (`landing_files.scan_day` with the resolved-cases feed, `read_landing_file`).
Labels for ids that are not among the day's messages are never dropped silently:
`match_labels` returns them, counted.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pandas as pd

from ai_assets.data.datasets import load_categories
from ai_assets.ingestion.accounting import Location, balance
from ai_assets.ingestion.identifiers import ID_PATTERN, id_pii_kind
from ai_assets.ingestion.landing_files import (
    DEFAULT_MAX_FILE_BYTES,
    RESOLVED_CASES_DIR,
    LandingFileRefused,
    RefusedFile,
    read_landing_file,
    scan_day,
)
from ai_assets.ingestion.parsing import parse_lines, safe_field_name
from ai_assets.ingestion.validation import parse_timestamp, quarantine_row
from ai_assets.schemas import QUARANTINE_COLUMNS

LABEL_FIELDS = ("message_id", "category", "resolved_at")
# The spelling the serving layer uses for "not a banking request" (serving/intent/out_of_scope.py,
# a layer above this one, so repeated here rather than imported).
OUT_OF_SCOPE_CATEGORY = "out_of_scope"

# Columns of the kept labels, in order.
LABEL_COLUMNS: dict[str, str] = {
    "message_id": "string",
    "category": "string (one of the 77 intents or out_of_scope)",
    "resolved_at": "timestamp[UTC]",
    "source_file": "string",
    "line": "int",
}
SUPERSEDED_COLUMNS: dict[str, str] = {
    "message_id": "string",
    "category": "string (the label on this line)",
    "kept_category": "string (the label kept for the id)",
    "outcome": "string (duplicate | conflicting_label)",
    "resolved_at": "timestamp[UTC]",
    "source_file": "string",
    "line": "int",
}

# Outcomes of a line that is valid but not kept.
DUPLICATE = "duplicate"
CONFLICTING_LABEL = "conflicting_label"
# Validation reasons (parse reasons come from parsing.PARSE_REASONS). Field-specific ones read
# `missing_field(category)`, `wrong_type(resolved_at)`.
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_MESSAGE_ID = "invalid_message_id"
INVALID_TIMESTAMP = "invalid_timestamp"
RESOLVED_BEFORE_DAY = "resolved_before_day"
UNKNOWN_CATEGORY = "unknown_category"


@functools.cache
def valid_categories() -> frozenset[str]:
    """The categories a label may carry: the shipped 77 intents and `out_of_scope`."""
    return frozenset(load_categories()) | {OUT_OF_SCOPE_CATEGORY}


def arrival_day(day: date) -> str:
    """The folder the labels of day `day`'s messages arrive in: the next day."""
    return (day + timedelta(days=1)).isoformat()


def resolved_file_path(root: Path, day: date) -> Path:
    """The file the simulator (and the CRM export) writes for day `day`:
    `resolved_cases/<day+1>/resolved-<day>.jsonl`."""
    return root / RESOLVED_CASES_DIR / arrival_day(day) / f"resolved-{day.isoformat()}.jsonl"


def read_resolved_files(root: Path, day: date,
                        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[dict[str, bytes], list[RefusedFile]]:
    """Every feed file of the arrival folder of `day` (name -> bytes), and the files refused.

    The folder is written by another system, so it is scanned and read exactly like a landing
    day (`scan_day` with the resolved-cases feed, `read_landing_file`): symlinks, FIFOs, hard
    links, files resolving outside the folder and oversized files are refused with the landing
    zone's reason codes, never opened or followed. No folder yet is `({}, [])`: labels arriving
    a day later is the ordinary state, not an error.
    """
    scan = scan_day(root, arrival_day(day), max_file_bytes, feed=RESOLVED_CASES_DIR)
    files: dict[str, bytes] = {}
    refused = list(scan.refused)
    for path in scan.files:
        try:
            files[path.name] = read_landing_file(path, max_file_bytes)
        except LandingFileRefused as exc:  # swapped between the scan and the read
            refused.append(RefusedFile(exc.name, exc.reason))
    return files, refused


@dataclass(frozen=True)
class FeedBalance:
    """Where each line of the feed went; `balanced` only when every line is in exactly one place."""

    lines_in: int
    labelled: int
    quarantined: int
    duplicates: int
    conflicts: int
    unaccounted: list[Location] = field(default_factory=list)
    counted_twice: list[Location] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return (not self.unaccounted and not self.counted_twice
                and self.lines_in == self.labelled + self.quarantined + self.duplicates + self.conflicts)

    def to_dict(self) -> dict:
        return {"lines_in": self.lines_in, "labelled": self.labelled, "quarantined": self.quarantined,
                "duplicates": self.duplicates, "conflicting_labels": self.conflicts, "balanced": self.balanced}


@dataclass
class ResolvedFeed:
    """One day's feed, validated: kept labels, quarantined lines and superseded lines."""

    labels: pd.DataFrame  # LABEL_COLUMNS, one row per message id, sorted by message id
    quarantined: pd.DataFrame  # QUARANTINE_COLUMNS, sorted by file and line
    superseded: pd.DataFrame  # SUPERSEDED_COLUMNS: the duplicate and conflicting lines
    lines: list[Location]  # every line read, (file, line)
    reasons: Counter[str] = field(default_factory=Counter)  # quarantine reason -> lines
    extra_fields: Counter[str] = field(default_factory=Counter)  # fields outside the contract -> lines

    @property
    def lines_in(self) -> int:
        return len(self.lines)

    @property
    def duplicates(self) -> int:
        return int((self.superseded["outcome"] == DUPLICATE).sum())

    @property
    def conflicts(self) -> int:
        return int((self.superseded["outcome"] == CONFLICTING_LABEL).sum())

    def balance(self) -> FeedBalance:
        """The line-by-line account, through the same `accounting.balance` the landing files use."""
        superseded = _locations(self.superseded)
        placed = balance(self.lines, set(superseded), _locations(self.labels), _locations(self.quarantined))
        counted_twice = placed.counted_twice
        if len(set(superseded)) != len(superseded):  # a set would hide a line superseded twice
            counted_twice = sorted(set(counted_twice) | {loc for loc, n in Counter(superseded).items() if n > 1})
        return FeedBalance(self.lines_in, len(self.labels), len(self.quarantined), self.duplicates,
                           self.conflicts, placed.unaccounted, counted_twice)

    def to_metadata(self) -> dict:
        """JSON-able counts for the Dagster event log (reasons and field names only: no content)."""
        return {**self.balance().to_dict(),
                "quarantine_reasons": dict(sorted(self.reasons.items())),
                "extra_fields": dict(sorted(self.extra_fields.items())),
                "categories": int(self.labels["category"].nunique())}


def _locations(frame: pd.DataFrame) -> list[Location]:
    return [(str(f), int(n)) for f, n in zip(frame["source_file"], frame["line"], strict=True)]


def _field_reasons(record: dict, day: date | None,
                   categories: Collection[str]) -> tuple[list[str], pd.Timestamp | None]:
    """Why a parsed record is not a usable label (empty: it is one), and its resolution time."""
    reasons: list[str] = []
    for name in LABEL_FIELDS:
        value = record.get(name)
        if value is None:  # absent or JSON null: either way there is no value
            reasons.append(f"{MISSING_FIELD}({name})")
        elif not isinstance(value, str):
            reasons.append(f"{WRONG_TYPE}({name})")
    message_id, category, resolved_at = (record.get(name) for name in LABEL_FIELDS)
    if isinstance(message_id, str) and (not ID_PATTERN.match(message_id) or id_pii_kind(message_id)):
        reasons.append(INVALID_MESSAGE_ID)
    if isinstance(category, str) and category not in categories:
        reasons.append(UNKNOWN_CATEGORY)
    timestamp = parse_timestamp(resolved_at) if isinstance(resolved_at, str) else None
    if isinstance(resolved_at, str):
        if timestamp is None:  # not ISO-8601, or no offset (a guessed zone would shift days)
            reasons.append(INVALID_TIMESTAMP)
        elif day is not None and timestamp < pd.Timestamp(datetime.combine(day, time(), tzinfo=UTC)):
            # A case about day D's message cannot have been resolved before D began.
            reasons.append(RESOLVED_BEFORE_DAY)
    return reasons, timestamp


def validate_resolved(files: Mapping[str, bytes], day: date | None = None,
                      categories: Collection[str] | None = None) -> ResolvedFeed:
    """Feed files (name -> bytes) to kept labels, quarantine rows and superseded lines.

    `day` is the partition the labels belong to (the day the messages were received): labels
    resolved before it began are refused. `categories` defaults to `valid_categories()`.
    Deterministic: files are read in name order and every output is sorted.
    """
    categories = valid_categories() if categories is None else frozenset(categories)
    lines: list[Location] = []
    quarantine: list[dict] = []
    reasons: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    candidates: list[dict] = []
    for name in sorted(files):
        parsed = parse_lines(name, files[name])
        for row, record in zip(parsed.rows, parsed.records, strict=True):
            lines.append((row.source_file, row.line))
            if record is None:
                reason = row.parse_error or "invalid_json"
                quarantine.append(quarantine_row(row, "parse", reason))
                reasons[reason] += 1
                continue
            extra.update(safe_field_name(k) for k in record if k not in LABEL_FIELDS)
            problems, timestamp = _field_reasons(record, day, categories)
            if problems:
                quarantine.append(quarantine_row(row, "validate", "; ".join(problems), record.get("message_id")))
                reasons.update(problems)
                continue
            candidates.append({"message_id": record["message_id"], "category": record["category"],
                               "resolved_at": timestamp, "source_file": row.source_file, "line": row.line})
    kept, superseded = _resolve(candidates)
    return ResolvedFeed(
        labels=_frame(kept, LABEL_COLUMNS, ["message_id"]),
        quarantined=_frame(quarantine, QUARANTINE_COLUMNS, ["source_file", "line"]),
        superseded=_frame(superseded, SUPERSEDED_COLUMNS, ["message_id", "source_file", "line"]),
        lines=lines, reasons=reasons, extra_fields=extra)


def _resolve(candidates: list[dict]) -> tuple[list[dict], list[dict]]:
    """One label per message id: the latest `resolved_at` wins, ties to the later line. Of the
    other lines of that id, each overruled category counts once as a conflicting label (its
    latest line), and every further line repeating a category already counted is a duplicate."""
    by_id: dict[str, list[dict]] = {}
    for candidate in candidates:
        by_id.setdefault(candidate["message_id"], []).append(candidate)
    kept: list[dict] = []
    superseded: list[dict] = []
    for rows in by_id.values():
        winner = max(rows, key=_recency)
        kept.append(winner)
        overruled = {}  # category -> its latest line, the one counted as the conflict
        for row in rows:
            if row["category"] != winner["category"]:
                best = overruled.get(row["category"])
                overruled[row["category"]] = row if best is None or _recency(row) > _recency(best) else best
        for row in rows:
            if row is winner:
                continue
            outcome = CONFLICTING_LABEL if overruled.get(row["category"]) is row else DUPLICATE
            superseded.append({**row, "kept_category": winner["category"], "outcome": outcome})
    return kept, superseded


def _recency(row: dict) -> tuple:
    return row["resolved_at"], row["source_file"], row["line"]


def _frame(rows: list[dict], columns: Mapping[str, str], order: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    types = {c: ("int64" if c == "line" else "string") for c in columns if c != "resolved_at"}
    frame = frame.astype(types)
    if "resolved_at" in columns:
        frame["resolved_at"] = pd.to_datetime(frame["resolved_at"], utc=True)
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


@dataclass
class LabelMatch:
    """Labels set against the day's messages. Nothing is dropped: `matched + of_quarantined +
    unknown` is every label, and `unlabelled` counts the messages still waiting for one."""

    matched: pd.DataFrame  # labels of the day's (validated) messages
    of_quarantined: pd.DataFrame  # labels of messages that were quarantined at ingestion
    unknown: pd.DataFrame  # labels of ids never seen that day
    messages: int  # the day's message ids
    unlabelled: int  # the day's messages without a label (yet)

    @property
    def labels_in(self) -> int:
        return len(self.matched) + len(self.of_quarantined) + len(self.unknown)

    def to_metadata(self, examples: int = 5) -> dict:
        """Counts, and the first few unknown ids (validated ids: short, PII-free tokens)."""
        return {"labels_in": self.labels_in, "matched": len(self.matched),
                "of_quarantined_messages": len(self.of_quarantined), "unknown_message_ids": len(self.unknown),
                "unknown_examples": [str(m) for m in self.unknown["message_id"].head(examples)],
                "messages": self.messages, "unlabelled_messages": self.unlabelled,
                "labelled_share": round(len(self.matched) / self.messages, 4) if self.messages else None}


def match_labels(labels: pd.DataFrame, message_ids: Iterable[str],
                 quarantined_ids: Iterable[str] = ()) -> LabelMatch:
    """Split kept labels by whether their message is among the day's `message_ids`.

    `quarantined_ids` (optional: the ids of the day's quarantined lines that carried a usable id)
    separates labels of messages we received but refused — expected, since agents resolve those
    too — from ids that no landing file carried at all, which point at a wrong feed or day.
    """
    known = {str(m) for m in message_ids}
    refused = {str(m) for m in quarantined_ids if isinstance(m, str)} - known
    ids = labels["message_id"].astype("string")
    in_day = ids.isin(known).to_numpy(dtype=bool)
    in_quarantine = ids.isin(refused).to_numpy(dtype=bool) & ~in_day
    matched = labels[in_day].reset_index(drop=True)
    return LabelMatch(matched=matched,
                      of_quarantined=labels[in_quarantine].reset_index(drop=True),
                      unknown=labels[~in_day & ~in_quarantine].reset_index(drop=True),
                      messages=len(known),
                      unlabelled=len(known - set(matched["message_id"].astype(str))))


__all__ = ["CONFLICTING_LABEL", "DUPLICATE", "LABEL_COLUMNS", "OUT_OF_SCOPE_CATEGORY",
           "SUPERSEDED_COLUMNS", "FeedBalance", "LabelMatch", "ResolvedFeed", "arrival_day",
           "match_labels", "read_resolved_files", "resolved_file_path", "valid_categories", "validate_resolved"]
