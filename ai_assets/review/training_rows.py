"""Reviewers' decisions as labelled rows for the next training, and their export.

A decision becomes a training row once it is *applied* (its effects committed: a pending,
failed or conflicted decision is no one's final word) and only when it names an intent:

  approve              the model's intent, confirmed by a person
  correct / override   the intent the person chose instead (an override corrects an action
                       the pipeline already took on its own)
  reject_out_of_scope  labelled `out_of_scope`: the model learns it is none of the 77 intents

A `reject_spam` decision is not a label: spam is no request the bank answers, and teaching the
model a "spam" class it never serves would only take probability from real intents. It still
counts as the latest decision on its message (below), so a message last judged spam leaves
the training set.

A message can be decided more than once: a decision that lost an apply conflict stays as
history (status `conflict`) and the reopened item is decided again; a message acted on
automatically and then overridden has both. The latest applied decision per message (highest
decision id; a message is its id *and* its masked text, as message ids are reused across days
with other content) is the one that counts.

Every row carries its provenance: decision id, reviewer and role, when it was decided and
applied, what the model had said (version, intent, confidence) and the message id. The input
is the masked text as validated (what the model was served); no customer id is carried: the
model does not need one and an export must not hand it out.

Plain Python (SQLAlchemy, pandas), no Dagster.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from ai_assets.files import replacing
from ai_assets.ops_db import OpsDb, Sessions
from ai_assets.ops_db.tables import DecisionKind, DecisionStatus, ReviewDecision

OUT_OF_SCOPE_LABEL = "out_of_scope"  # ai_assets.serving.intent.out_of_scope.OUT_OF_SCOPE
LABEL_KINDS: tuple[str, ...] = (DecisionKind.APPROVE.value, DecisionKind.CORRECT.value,
                                DecisionKind.OVERRIDE.value, DecisionKind.REJECT_OUT_OF_SCOPE.value)
EXPORT_FORMATS = ("csv", "jsonl")
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection");
# tab and carriage return too, as some programs strip them and read what follows.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class TrainingRow:
    """One reviewed message: input, the model's output, the person's output, provenance."""

    decision_id: int
    message_id: str
    text: str  # PII-masked, as validated
    label: str  # the person's intent (`out_of_scope` for reject_out_of_scope)
    kind: str
    reviewer: str
    reviewer_role: str
    decided_at: datetime
    applied_at: datetime | None
    model_version: str | None
    model_intent: str
    model_confidence: float | None
    review_item_id: int | None
    action_id: int | None  # set for an override of an automatic action

    @property
    def is_correction(self) -> bool:
        """The person's label differs from the model's answer."""
        return self.label != self.model_intent


COLUMNS: dict[str, str] = {
    "decision_id": "int (review_decisions.id; the rows' order and the retraining watermark)",
    "message_id": "string",
    "text": "string (PII-masked, as validated: the training input)",
    "label": "string (the person's intent, or out_of_scope)",
    "kind": "string (approve | correct | override | reject_out_of_scope)",
    "reviewer": "string",
    "reviewer_role": "string (reviewer | senior | admin)",
    "decided_at": "timestamp[UTC]",
    "applied_at": "timestamp[UTC] or null",
    "model_version": "string or null (the registry version that answered)",
    "model_intent": "string (the model's answer)",
    "model_confidence": "float or null",
    "review_item_id": "int or null",
    "action_id": "int or null (an override's automatic action)",
    "is_correction": "bool (label differs from model_intent)",
}


def _sessions(source: OpsDb | Sessions) -> Sessions:
    return source.sessions if isinstance(source, OpsDb) else source


def _latest_labels(after_id: int):
    """Applied label decisions with id > after_id that no later applied decision on the same
    message (id and text) supersedes."""
    later = aliased(ReviewDecision)
    superseded = exists().where(and_(later.message_id == ReviewDecision.message_id,
                                     later.text == ReviewDecision.text,
                                     later.status == DecisionStatus.APPLIED.value,
                                     later.id > ReviewDecision.id))
    return (ReviewDecision.status == DecisionStatus.APPLIED.value, ReviewDecision.kind.in_(LABEL_KINDS),
            or_(ReviewDecision.kind == DecisionKind.REJECT_OUT_OF_SCOPE.value, ReviewDecision.intent.is_not(None)),
            ReviewDecision.id > after_id, ~superseded)


def _check_after(after_id: int) -> int:
    if isinstance(after_id, bool) or not isinstance(after_id, int) or after_id < 0:
        raise ValueError(f"after_id must be a non-negative decision id, got {after_id!r}")
    return after_id


def training_rows(source: OpsDb | Sessions, *, after_id: int = 0) -> list[TrainingRow]:
    """The labelled rows of decisions with id > `after_id`, in decision-id order."""
    query = select(ReviewDecision).where(*_latest_labels(_check_after(after_id))).order_by(ReviewDecision.id)
    with _sessions(source).read() as s:
        return [TrainingRow(
            decision_id=d.id, message_id=d.message_id, text=d.text,
            label=OUT_OF_SCOPE_LABEL if d.kind == DecisionKind.REJECT_OUT_OF_SCOPE.value else d.intent,
            kind=d.kind, reviewer=d.reviewer, reviewer_role=d.reviewer_role, decided_at=d.decided_at,
            applied_at=d.applied_at, model_version=d.model_version, model_intent=d.model_intent,
            model_confidence=d.model_confidence, review_item_id=d.review_item_id, action_id=d.action_id,
        ) for d in s.scalars(query)]


def new_labels(source: OpsDb | Sessions, *, after_id: int = 0) -> tuple[int, int]:
    """(how many labelled rows have a decision id > `after_id`, the newest such id or
    `after_id`): what the retraining sensor counts, without loading the rows."""
    query = select(func.count(), func.max(ReviewDecision.id)).where(*_latest_labels(_check_after(after_id)))
    with _sessions(source).read() as s:
        count, newest = s.execute(query).one()
    return int(count), int(newest) if newest is not None else after_id


def rows_frame(rows: Sequence[TrainingRow]) -> pd.DataFrame:
    """The rows as a frame with `COLUMNS`, in order (what the `training_data` asset stores)."""
    records = [{**asdict(r), "is_correction": r.is_correction} for r in rows]
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    for column in ("decided_at", "applied_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("decision_id",):
        frame[column] = frame[column].astype("int64")
    for column in ("review_item_id", "action_id"):
        frame[column] = frame[column].astype("Int64")
    frame["model_confidence"] = frame["model_confidence"].astype("float64")
    frame["is_correction"] = frame["is_correction"].astype(bool)
    return frame


def summary(rows: Iterable[TrainingRow]) -> dict[str, Any]:
    """Counts the `training_data` asset shows: rows, per kind and label, corrections, and the
    newest decision id (the watermark the next training records)."""
    rows = list(rows)
    return {
        "rows": len(rows),
        "per_kind": dict(sorted(Counter(r.kind for r in rows).items())),
        "per_label": dict(sorted(Counter(r.label for r in rows).items())),
        "corrections": sum(r.is_correction for r in rows),
        "newest_decision_id": max((r.decision_id for r in rows), default=0),
    }


# --------------------------------------------------------------------------- export


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_record(row: TrainingRow) -> dict[str, Any]:
    """One row as (input, model output, human output, provenance): a JSONL line."""
    return {
        "input": {"message_id": row.message_id, "text": row.text},
        "model_output": {"intent": row.model_intent, "confidence": row.model_confidence,
                         "model_version": row.model_version},
        "human_output": {"intent": row.label, "kind": row.kind, "is_correction": row.is_correction},
        "provenance": {"decision_id": row.decision_id, "reviewer": row.reviewer,
                       "reviewer_role": row.reviewer_role, "decided_at": _iso(row.decided_at),
                       "applied_at": _iso(row.applied_at), "review_item_id": row.review_item_id,
                       "action_id": row.action_id},
    }


CSV_HEADER = ("decision_id", "message_id", "text", "model_version", "model_intent", "model_confidence",
              "label", "kind", "is_correction", "reviewer", "reviewer_role", "decided_at", "applied_at",
              "review_item_id", "action_id")


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text that would start a formula gets a leading `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_row(row: TrainingRow) -> list[Any]:
    values = {f.name: getattr(row, f.name) for f in fields(row)}
    values.update(is_correction=row.is_correction, decided_at=_iso(row.decided_at), applied_at=_iso(row.applied_at))
    return [csv_cell("" if values[c] is None else values[c]) for c in CSV_HEADER]


def export_rows(db: OpsDb, fmt: str, out: Path) -> int:
    """Write every labelled row to `out` as CSV (a header, then one row each) or JSONL (one
    object per line); the number of rows written. Written to a temporary file beside `out`
    and renamed into place, so a reader never sees half a file and a failed export leaves
    the previous one."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: directory {out.parent} does not exist")
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a directory")
    rows = training_rows(db)
    with replacing(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        if fmt == "csv":
            writer = csv.writer(handle)
            writer.writerow(CSV_HEADER)
            writer.writerows(_csv_row(r) for r in rows)
        else:
            for r in rows:
                handle.write(json.dumps(export_record(r), ensure_ascii=False) + "\n")
    return len(rows)


__all__ = ["COLUMNS", "CSV_HEADER", "EXPORT_FORMATS", "LABEL_KINDS", "OUT_OF_SCOPE_LABEL", "TrainingRow",
           "csv_cell", "export_record", "export_rows", "new_labels", "rows_frame", "summary", "training_rows"]
