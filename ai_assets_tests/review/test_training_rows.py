"""Reviewers' decisions as labelled rows with provenance, and their export, on SQLite and
PostgreSQL: which decisions count, the latest one per message, the watermark, CSV and JSONL
content, spreadsheet formula injection, atomic writes."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import UTC, datetime

import pytest

from ai_assets.ops_db.tables import Action, ReviewDecision, ReviewItem
from ai_assets.ops_db.types import utcnow
from ai_assets.review.training_rows import (
    COLUMNS,
    CSV_HEADER,
    csv_cell,
    export_rows,
    new_labels,
    rows_frame,
    summary,
    training_rows,
)
from ai_assets_tests.ops_db import conftest as ops_db_fixtures

pg_module_database, db_url, engine, ops = (ops_db_fixtures.pg_module_database, ops_db_fixtures.db_url,
                                           ops_db_fixtures.engine, ops_db_fixtures.ops)

DECIDED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def add_item(s, message_id: str, text: str, intent: str = "card_arrival", confidence: float = 0.41) -> ReviewItem:
    row = ReviewItem(idempotency_key=uuid.uuid4().hex, message_id=message_id, customer_id="c-000001",
                     reason="below_threshold", intent=intent, confidence=confidence, queue="cards", priority="P3",
                     text=text, suggestions=[[intent, confidence]], model_version="intent_model v1", due_at=utcnow())
    s.add(row)
    s.flush()
    return row


def add_action(s, message_id: str) -> Action:
    row = Action(idempotency_key=f"act-{message_id}", message_id=message_id, action="auto_reply", decision="act",
                 outcome="acted", policy_version="routing-test")
    s.add(row)
    s.flush()
    return row


def decide(s, target: ReviewItem | Action, kind: str, intent: str | None, *, status: str = "applied",
           reviewer: str = "alice", text: str | None = None, message_id: str | None = None,
           model_intent: str = "card_arrival") -> ReviewDecision:
    on_item = isinstance(target, ReviewItem)
    row = ReviewDecision(
        review_item_id=target.id if on_item else None, action_id=None if on_item else target.id,
        message_id=message_id or target.message_id, customer_id="c-000001",
        text=text if text is not None else (target.text if on_item else "my card never came"),
        kind=kind, intent=intent, reviewer=reviewer, reviewer_role="senior" if not on_item else "reviewer",
        decided_at=DECIDED, model_intent=model_intent, model_confidence=0.41, model_version="intent_model v1",
        compensation=None if on_item else "followup_email", reason=None if on_item else "wrong answer sent",
        status=status, applied_at=DECIDED if status == "applied" else None)
    s.add(row)
    s.flush()
    return row


def test_applied_label_decisions_become_rows_with_provenance_in_decision_order(ops):
    with ops.sessions.write() as s:
        approve = decide(s, add_item(s, "m-1", "where is my new card?"), "approve", "card_arrival")
        correct = decide(s, add_item(s, "m-2", "I lost my card [CARD]"), "correct", "lost_or_stolen_card")
        oos = decide(s, add_item(s, "m-3", "what's the weather"), "reject_out_of_scope", "out_of_scope")
        decide(s, add_item(s, "m-4", "buy cheap watches"), "reject_spam", None)  # spam is no label
        decide(s, add_item(s, "m-5", "pending one"), "correct", "card_linking", status="pending")
        decide(s, add_item(s, "m-6", "failed one"), "correct", "card_linking", status="failed")
        override = decide(s, add_action(s, "m-7"), "override", "card_delivery_estimate", reviewer="bob")
    rows = training_rows(ops)
    assert [r.decision_id for r in rows] == [approve.id, correct.id, oos.id, override.id]
    assert [(r.message_id, r.label, r.kind, r.is_correction) for r in rows] == [
        ("m-1", "card_arrival", "approve", False), ("m-2", "lost_or_stolen_card", "correct", True),
        ("m-3", "out_of_scope", "reject_out_of_scope", True), ("m-7", "card_delivery_estimate", "override", True)]
    first = rows[1]
    assert first.text == "I lost my card [CARD]" and first.reviewer == "alice" and first.reviewer_role == "reviewer"
    assert first.decided_at == DECIDED and first.applied_at == DECIDED
    assert (first.model_version, first.model_intent, first.model_confidence) == ("intent_model v1", "card_arrival", 0.41)
    assert first.review_item_id is not None and first.action_id is None
    assert rows[3].action_id is not None and rows[3].review_item_id is None and rows[3].reviewer == "bob"
    assert not hasattr(first, "customer_id")  # the export must not hand customer ids out
    assert summary(rows) == {"rows": 4, "per_kind": {"approve": 1, "correct": 1, "override": 1,
                                                     "reject_out_of_scope": 1},
                             "per_label": {"card_arrival": 1, "card_delivery_estimate": 1, "lost_or_stolen_card": 1,
                                           "out_of_scope": 1},
                             "corrections": 3, "newest_decision_id": override.id}


def test_the_latest_applied_decision_on_a_message_wins(ops):
    with ops.sessions.write() as s:
        item = add_item(s, "m-1", "my card payment was declined")
        decide(s, item, "correct", "declined_card_payment", status="conflict")  # lost an apply conflict
        again = decide(s, item, "correct", "card_payment_not_recognised")
        # Acted on automatically, reviewed, then overridden by a senior: the override is the last word.
        twice = add_item(s, "m-2", "the transfer is not showing")
        decide(s, twice, "approve", "card_arrival")
        override = decide(s, add_action(s, "m-2"), "override", "transfer_not_received_by_recipient",
                          text="the transfer is not showing", message_id="m-2")
        # Delivered again, reviewed again, last judged spam: the earlier label leaves the training set.
        decide(s, add_item(s, "m-3", "win a prize now"), "correct", "card_arrival")
        decide(s, add_item(s, "m-3", "win a prize now"), "reject_spam", None)
        # The same id reused on another day with other content is another message.
        reused = decide(s, add_item(s, "m-1", "a different message, same id"), "approve", "card_arrival")
    rows = training_rows(ops)
    assert [(r.decision_id, r.message_id, r.label) for r in rows] == [
        (again.id, "m-1", "card_payment_not_recognised"),
        (override.id, "m-2", "transfer_not_received_by_recipient"),
        (reused.id, "m-1", "card_arrival")]
    assert new_labels(ops) == (3, reused.id)


def test_rows_after_a_watermark_and_the_count_the_sensor_reads(ops):
    with ops.sessions.write() as s:
        ids = [decide(s, add_item(s, f"m-{i}", f"text {i}"), "correct", "card_linking").id for i in range(5)]
        decide(s, add_item(s, "m-spam", "spam text"), "reject_spam", None)
    assert [r.decision_id for r in training_rows(ops, after_id=ids[2])] == ids[3:]
    assert new_labels(ops, after_id=ids[2]) == (2, ids[4])
    assert new_labels(ops, after_id=ids[4]) == (0, ids[4])
    assert new_labels(ops.sessions) == (5, ids[4])
    with pytest.raises(ValueError, match="non-negative decision id"):
        training_rows(ops, after_id=-1)


def test_rows_as_the_training_data_frame(ops):
    assert list(rows_frame([]).columns) == list(COLUMNS)
    with ops.sessions.write() as s:
        decide(s, add_item(s, "m-1", "lost card"), "correct", "lost_or_stolen_card")
        decide(s, add_action(s, "m-2"), "override", "card_arrival", model_intent="card_arrival")
    frame = rows_frame(training_rows(ops))
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 2
    assert frame["is_correction"].tolist() == [True, False]
    assert str(frame["decided_at"].dt.tz) == "UTC"
    assert frame["review_item_id"].isna().tolist() == [False, True]


HOSTILE = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1 555 0100 is my number", "-2 pounds taken",
           "@SUM(A1:A9)", "\tleading tab", "my card, \"quoted\"\nand a second line"]


def hostile_rows(ops) -> list[ReviewDecision]:
    with ops.sessions.write() as s:
        return [decide(s, add_item(s, f"m-{i}", text), "correct", "card_linking") for i, text in enumerate(HOSTILE)]


def test_csv_export_has_a_header_and_defuses_spreadsheet_formulas(ops, tmp_path):
    decisions = hostile_rows(ops)
    (tmp_path / "exports").mkdir()
    out = tmp_path / "exports" / "labels.csv"
    assert export_rows(ops, "csv", out) == len(HOSTILE)
    with out.open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    assert tuple(lines[0]) == CSV_HEADER
    records = [dict(zip(CSV_HEADER, line, strict=True)) for line in lines[1:]]
    assert [r["text"] for r in records] == ["'" + t for t in HOSTILE[:5]] + [HOSTILE[5]]
    assert [int(r["decision_id"]) for r in records] == [d.id for d in decisions]
    first = records[0]
    assert (first["model_intent"], first["model_confidence"], first["label"], first["kind"]) == \
        ("card_arrival", "0.41", "card_linking", "correct")
    assert first["reviewer"] == "alice" and first["decided_at"] == DECIDED.isoformat() and first["action_id"] == ""
    assert not any(c.startswith(("=", "+", "-", "@", "\t")) for r in records for c in r.values())
    assert [p.name for p in out.parent.iterdir()] == ["labels.csv"]  # no temporary file left


def test_jsonl_export_is_one_object_per_line_in_four_parts(ops, tmp_path):
    decisions = hostile_rows(ops)
    out = tmp_path / "labels.jsonl"
    assert export_rows(ops, "jsonl", out) == len(HOSTILE)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(HOSTILE)
    records = [json.loads(line) for line in lines]
    assert [r["input"]["text"] for r in records] == HOSTILE  # JSON needs no formula escape
    first = records[0]
    assert set(first) == {"input", "model_output", "human_output", "provenance"}
    assert first["model_output"] == {"intent": "card_arrival", "confidence": 0.41, "model_version": "intent_model v1"}
    assert first["human_output"] == {"intent": "card_linking", "kind": "correct", "is_correction": True}
    assert first["provenance"]["decision_id"] == decisions[0].id and first["provenance"]["reviewer"] == "alice"
    assert first["input"]["message_id"] == "m-0"


def test_export_refuses_bad_input_with_a_clear_error_and_keeps_the_previous_file(ops, tmp_path):
    hostile_rows(ops)
    out = tmp_path / "labels.csv"
    out.write_text("previous export\n")
    with pytest.raises(ValueError, match="unknown export format 'xlsx': use one of csv, jsonl"):
        export_rows(ops, "xlsx", out)
    with pytest.raises(ValueError, match="does not exist"):
        export_rows(ops, "csv", tmp_path / "missing" / "labels.csv")
    with pytest.raises(ValueError, match="is a directory"):
        export_rows(ops, "csv", tmp_path)
    assert out.read_text() == "previous export\n"
    assert export_rows(ops, "csv", out) == len(HOSTILE)  # replaced in one rename
    assert out.read_text().startswith("decision_id,")


def test_csv_cell_escapes_only_text_that_starts_a_formula():
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("-") == "'-" and csv_cell("@x") == "'@x"
    assert csv_cell("a=1") == "a=1" and csv_cell(-1.5) == -1.5 and csv_cell(3) == 3 and csv_cell("") == ""
