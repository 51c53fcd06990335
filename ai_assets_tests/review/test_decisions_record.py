"""Recording reviewers' decisions: validation, what is copied from the model, one transaction
with the item update and the audit row, and two reviewers at once — one wins, the other is told —
on SQLite and PostgreSQL (where the race is real: concurrent connections)."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, idempotency_key, triage
from ai_assets.cli import main
from ai_assets.ops_db import AuditContext, OpsDb, pipeline_actor
from ai_assets.ops_db.tables import Action, AuditEntry, ReviewDecision, ReviewItem
from ai_assets.review.apply import apply_pending
from ai_assets.review.decisions import (
    REVIEW_DECISION_EVENT,
    AlreadyDecided,
    DecisionError,
    ItemChanged,
    NotAllowed,
    NotFound,
    record_decision,
)
from ai_assets_tests.ops_db import conftest as ops_db_fixtures

pg_module_database, db_url, engine, ops = (ops_db_fixtures.pg_module_database, ops_db_fixtures.db_url,
                                           ops_db_fixtures.engine, ops_db_fixtures.ops)

POLICY = load_policy()
SUGGESTIONS = (("card_arrival", 0.44), ("card_delivery_estimate", 0.31), ("card_not_working", 0.09))


def decision(message_id: str, intent: str = "card_arrival", *, customer: str = "cust-0001", automated: bool = False,
             text: str = "my card [CARD] has not arrived") -> MessageDecision:
    t = triage(intent, automated, None if automated else "below_threshold: 0.44 < 0.70", POLICY)
    content = content_hash(customer, "app", text)
    return MessageDecision(
        message_id=message_id, customer_id=customer, intent=intent, confidence=0.97 if automated else 0.44,
        decision=t.decision, action=t.action, reason=t.reason, queue=t.queue, priority=t.priority,
        policy_version=POLICY.version, idempotency_key=idempotency_key(message_id, t.action, POLICY.version, content),
        text=text, content_hash=content, model_version="intent_model v3", model_call={"tier": "local"},
        suggestions=SUGGESTIONS)


def seed(ops, *decisions: MessageDecision) -> dict[str, int]:
    """Act on the decisions through the real ledger; message id -> review item or action id."""
    ActionLedger(ops.sessions, POLICY, AuditContext(pipeline_actor("run-1"), "run-1", "2026-11-20")).execute_all(
        list(decisions))
    with ops.sessions.read() as s:
        ids = {m: i for m, i in s.execute(select(ReviewItem.message_id, ReviewItem.id))}
        ids |= {m: i for m, i in s.execute(select(Action.message_id, Action.id).where(Action.outcome == "acted"))}
    return ids


def decisions(ops) -> list[ReviewDecision]:
    with ops.sessions.read() as s:
        return list(s.scalars(select(ReviewDecision).order_by(ReviewDecision.id)))


def item(ops, item_id: int) -> ReviewItem:
    with ops.sessions.read() as s:
        return s.get(ReviewItem, item_id)


def audit_rows(ops) -> list[AuditEntry]:
    with ops.sessions.read() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.event == REVIEW_DECISION_EVENT)
                              .order_by(AuditEntry.id)))


def test_a_correction_is_recorded_pending_with_what_the_model_said(ops):
    ids = seed(ops, decision("m-1"))
    decision_id = record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"],
                                  kind="correct", intent="card_delivery_estimate", reason="asks when",
                                  item_version_seen=1)
    [d] = decisions(ops)
    assert d.id == decision_id
    assert (d.status, d.kind, d.intent, d.reason, d.reviewer, d.reviewer_role) == (
        "pending", "correct", "card_delivery_estimate", "asks when", "alice", "reviewer")
    assert (d.model_intent, d.model_confidence, d.model_version) == ("card_arrival", 0.44, "intent_model v3")
    assert d.model_suggestions == [list(p) for p in SUGGESTIONS]
    assert (d.message_id, d.customer_id, d.text) == ("m-1", "cust-0001", "my card [CARD] has not arrived")
    assert (d.review_item_id, d.action_id, d.item_version_seen, d.case_id) == (ids["m-1"], None, 1, None)
    assert d.decided_at is not None and d.applied_at is None
    after = item(ops, ids["m-1"])
    assert (after.status, after.version, after.intent) == ("decided", 2, "card_arrival"), "the model's answer stays"
    [entry] = audit_rows(ops)
    assert entry.actor == "alice" and entry.message_id == "m-1"
    assert {k: entry.detail[k] for k in ("reviewer", "kind", "intent", "reason", "model_intent", "decision_id")} == {
        "reviewer": "alice", "kind": "correct", "intent": "card_delivery_estimate", "reason": "asks when",
        "model_intent": "card_arrival", "decision_id": decision_id}


@pytest.mark.parametrize("kind,intent,stored_kind,stored_intent", [
    ("approve", None, "approve", "card_arrival"),
    ("approve", "card_arrival", "approve", "card_arrival"),
    ("correct", "card_arrival", "approve", "card_arrival"),  # the model's own intent is an approval
    ("correct", "out_of_scope", "reject_out_of_scope", "out_of_scope"),
    ("reject_out_of_scope", "card_linking", "reject_out_of_scope", "out_of_scope"),
    ("reject_spam", None, "reject_spam", None),
])
def test_each_kind_stores_the_persons_answer(ops, kind, intent, stored_kind, stored_intent):
    ids = seed(ops, decision("m-1"))
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind=kind, intent=intent,
                    item_version_seen=1)
    [d] = decisions(ops)
    assert (d.kind, d.intent, d.compensation) == (stored_kind, stored_intent, None)


@pytest.mark.parametrize("changes,error", [
    ({"kind": "correct", "intent": "not_a_label"}, "not one of the 78 labels"),
    ({"kind": "correct", "intent": None}, "not one of the 78 labels"),
    ({"kind": "approve", "intent": "card_linking"}, "approve means the model's intent"),
    ({"kind": "override", "intent": "card_linking"}, "override targets an automatic action"),
    ({"kind": "delete", "intent": None}, "kind 'delete'"),
    ({"kind": "correct", "intent": "card_linking", "compensation": "requeue"}, "compensation belongs"),
    ({"kind": "approve", "item_version_seen": None}, "item_version_seen"),
    ({"kind": "approve", "reason": "x" * 2001}, "at most 2000"),
    ({"kind": "approve", "role": "root"}, "unknown role"),
    ({"kind": "approve", "reviewer": " "}, "reviewer's name"),
])
def test_a_bad_decision_is_refused_and_nothing_is_written(ops, changes, error):
    ids = seed(ops, decision("m-1"))
    args = {"reviewer": "alice", "role": "reviewer", "item_id": ids["m-1"], "item_version_seen": 1, **changes}
    with pytest.raises(DecisionError, match=error):
        record_decision(ops.sessions, **args)
    assert decisions(ops) == [] and audit_rows(ops) == []
    assert (item(ops, ids["m-1"]).status, item(ops, ids["m-1"]).version) == ("open", 1)


def test_a_model_answer_that_is_no_label_cannot_be_approved(ops):
    ids = seed(ops, decision("m-1"))
    with ops.sessions.write() as s:
        s.execute(update(ReviewItem).values(intent="needs_human"))
    with pytest.raises(DecisionError, match="not a label to approve"):
        record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="approve",
                        item_version_seen=1)
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="correct",
                    intent="card_arrival", item_version_seen=1)
    assert decisions(ops)[0].kind == "correct"


def test_senior_queue_items_are_for_seniors_and_admins(ops):
    ids = seed(ops, decision("m-1"), decision("m-2", customer="cust-0002"))
    with ops.sessions.write() as s:
        s.execute(update(ReviewItem).values(review_queue="senior", version=2))
    with pytest.raises(NotAllowed):
        record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="approve",
                        item_version_seen=2)
    record_decision(ops.sessions, reviewer="sam", role="senior", item_id=ids["m-1"], kind="approve",
                    item_version_seen=2)
    record_decision(ops.sessions, reviewer="ada", role="admin", item_id=ids["m-2"], kind="approve",
                    item_version_seen=2)
    assert [d.reviewer for d in decisions(ops)] == ["sam", "ada"]


def test_the_second_decision_on_an_item_is_told_who_decided(ops):
    ids = seed(ops, decision("m-1"))
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="approve",
                    item_version_seen=1)
    with pytest.raises(AlreadyDecided, match="already decided by alice") as told:
        record_decision(ops.sessions, reviewer="bob", role="reviewer", item_id=ids["m-1"], kind="correct",
                        intent="card_linking", item_version_seen=1)
    assert told.value.by == "alice" and told.value.at is not None
    assert [d.reviewer for d in decisions(ops)] == ["alice"] and len(audit_rows(ops)) == 1


def test_an_item_closed_without_a_decision_is_already_decided_by_whoever_closed_it(ops):
    ids = seed(ops, decision("m-1"))
    with ops.sessions.write() as s:
        s.execute(update(ReviewItem).values(status="resolved", resolved_by="pipeline run run-2", version=2))
    with pytest.raises(AlreadyDecided, match="pipeline run run-2"):
        record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="approve",
                        item_version_seen=1)


def test_an_item_that_changed_since_it_was_read_must_be_read_again(ops):
    ids = seed(ops, decision("m-1"))
    with ops.sessions.write() as s:  # escalated meanwhile: still open, one version on
        s.execute(update(ReviewItem).values(version=2))
    with pytest.raises(ItemChanged, match="version 1 -> 2"):
        record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="approve",
                        item_version_seen=1)
    assert decisions(ops) == []
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="approve",
                    item_version_seen=2)
    assert item(ops, ids["m-1"]).version == 3


def test_an_unknown_item_or_action_is_not_found(ops):
    with pytest.raises(NotFound):
        record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=999, kind="approve",
                        item_version_seen=1)
    with pytest.raises(NotFound):
        record_decision(ops.sessions, reviewer="sam", role="senior", action_id=999, kind="override",
                        intent="card_linking", reason="wrong", compensation="requeue")
    with pytest.raises(DecisionError, match="exactly one"):
        record_decision(ops.sessions, reviewer="sam", role="senior", kind="approve")


def test_an_override_copies_the_automatic_answer_and_the_case_version(ops):
    ids = seed(ops, decision("m-auto", automated=True, text="card [CARD] still missing"))
    case = ops.cases.all()[0]
    decision_id = record_decision(ops.sessions, reviewer="sam", role="senior", action_id=ids["m-auto"],
                                  kind="override", intent="card_delivery_estimate", reason="  asks when it comes ",
                                  compensation="followup_email")
    [d] = decisions(ops)
    assert d.id == decision_id
    assert (d.kind, d.intent, d.compensation, d.reason) == (
        "override", "card_delivery_estimate", "followup_email", "asks when it comes")
    assert (d.action_id, d.review_item_id, d.case_id, d.case_version_seen) == (ids["m-auto"], None, case.id, 1)
    assert (d.model_intent, d.model_confidence, d.model_version) == ("card_arrival", 0.97, "intent_model v3")
    assert (d.text, d.customer_id, d.message_id, d.status) == (
        "card [CARD] still missing", "cust-0001", "m-auto", "pending")
    [entry] = audit_rows(ops)
    assert entry.detail["kind"] == "override" and entry.detail["compensation"] == "followup_email"
    with pytest.raises(AlreadyDecided, match="action was already decided by sam"):
        record_decision(ops.sessions, reviewer="ada", role="admin", action_id=ids["m-auto"], kind="override",
                        intent="card_linking", reason="no", compensation="requeue")


@pytest.mark.parametrize("changes,error,exc", [
    ({"role": "reviewer"}, "senior reviewer or an admin", NotAllowed),
    ({"reason": "   "}, "needs a reason", DecisionError),
    ({"reason": None}, "needs a reason", DecisionError),
    ({"compensation": None}, "needs a compensation", DecisionError),
    ({"compensation": "refund"}, "needs a compensation", DecisionError),
    ({"intent": "nonsense"}, "not one of the 78 labels", DecisionError),
    ({"kind": "correct"}, "kind override", DecisionError),
])
def test_an_override_needs_a_senior_a_reason_a_compensation_and_a_label(ops, changes, error, exc):
    ids = seed(ops, decision("m-auto", automated=True))
    args = {"reviewer": "sam", "role": "senior", "action_id": ids["m-auto"], "kind": "override",
            "intent": "card_linking", "reason": "wrong intent", "compensation": "reopen_case", **changes}
    with pytest.raises(exc, match=error):
        record_decision(ops.sessions, **args)
    assert decisions(ops) == []


def test_only_an_automatic_action_can_be_overridden(ops):
    seed(ops, decision("m-review"))
    with ops.sessions.read() as s:
        review_action = s.scalar(select(Action.id).where(Action.message_id == "m-review"))
    with pytest.raises(DecisionError, match="not carried out automatically"):
        record_decision(ops.sessions, reviewer="sam", role="senior", action_id=review_action, kind="override",
                        intent="card_linking", reason="wrong", compensation="requeue")


def _race(db_url: str, calls: list[dict]) -> list[object]:
    """Each call in its own thread with its own engine (connections), started together."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int, kwargs: dict) -> None:
        with OpsDb.open(db_url, migrate=False) as db:
            with db.sessions.read() as s:
                s.execute(select(1))  # connect before the start line
            barrier.wait()
            try:
                results[i] = record_decision(db.sessions, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the outcome is what the test looks at
                results[i] = exc

    threads = [threading.Thread(target=run, args=(i, kwargs)) for i, kwargs in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_two_reviewers_deciding_one_item_at_once_one_wins_the_other_is_told(ops, db_url):
    ids = seed(ops, *[decision(f"m-{i}", customer=f"cust-{i:04d}") for i in range(6)])
    for i in range(6):
        item_id = ids[f"m-{i}"]
        results = _race(db_url, [
            {"reviewer": "alice", "role": "reviewer", "item_id": item_id, "kind": "approve", "item_version_seen": 1},
            {"reviewer": "bob", "role": "reviewer", "item_id": item_id, "kind": "correct",
             "intent": "card_linking", "item_version_seen": 1},
        ])
        won = [r for r in results if isinstance(r, int)]
        lost = [r for r in results if isinstance(r, AlreadyDecided)]
        assert len(won) == 1 and len(lost) == 1, results
        with ops.sessions.read() as s:
            rows = list(s.scalars(select(ReviewDecision).where(ReviewDecision.review_item_id == item_id)))
        assert [r.id for r in rows] == won
        assert lost[0].by == rows[0].reviewer, "the loser is told who won"
        assert (item(ops, item_id).status, item(ops, item_id).version) == ("decided", 2)
    assert len(audit_rows(ops)) == 6


def test_two_seniors_overriding_one_action_at_once_one_wins(ops, db_url):
    ids = seed(ops, decision("m-auto", automated=True))
    results = _race(db_url, [
        {"reviewer": name, "role": "senior", "action_id": ids["m-auto"], "kind": "override",
         "intent": intent, "reason": "wrong", "compensation": "followup_email"}
        for name, intent in (("sam", "card_linking"), ("ada", "card_delivery_estimate"))])
    assert sorted(type(r).__name__ for r in results) == ["AlreadyDecided", "int"], results
    assert len(decisions(ops)) == 1


def test_an_override_racing_an_uncommitted_one_is_refused_by_the_unique_index(ops, db_url):
    """The other transaction has inserted its decision but not committed: ours sees nothing yet,
    inserts, and (PostgreSQL) waits on the unique index until the other commits — then loses."""
    ids = seed(ops, decision("m-auto", automated=True))
    case = ops.cases.all()[0]
    inserted, release = threading.Event(), threading.Event()

    def other() -> None:
        with OpsDb.open(db_url, migrate=False) as db, db.sessions.write() as s:
            s.add(ReviewDecision(action_id=ids["m-auto"], message_id="m-auto", customer_id="cust-0001", text="t",
                                 kind="override", intent="card_linking", compensation="requeue", reason="first",
                                 reviewer="ada", reviewer_role="admin", case_id=case.id, case_version_seen=1,
                                 model_intent="card_arrival", model_suggestions=[]))
            s.flush()
            inserted.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=other)
    holder.start()
    assert inserted.wait(timeout=60)
    outcome: list[object] = []

    def ours() -> None:
        try:
            with OpsDb.open(db_url, migrate=False) as db:
                outcome.append(record_decision(db.sessions, reviewer="sam", role="senior", action_id=ids["m-auto"],
                                               kind="override", intent="card_delivery_estimate", reason="second",
                                               compensation="followup_email"))
        except Exception as exc:  # noqa: BLE001
            outcome.append(exc)

    racer = threading.Thread(target=ours)
    racer.start()
    racer.join(timeout=1.0)  # it is waiting on the other transaction (a lock on either database)
    release.set()
    holder.join(timeout=60)
    racer.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyDecided), outcome
    assert outcome[0].by == "ada"
    assert [(d.reviewer, d.reason) for d in decisions(ops)] == [("ada", "first")]


def test_the_export_command_writes_the_recorded_decisions(ops, db_url, tmp_path, monkeypatch):
    ids = seed(ops, decision("m-1"), decision("m-2", customer="cust-0002"))
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-1"], kind="correct",
                    intent="card_delivery_estimate", item_version_seen=1)
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids["m-2"], kind="approve",
                    item_version_seen=1)
    monkeypatch.setenv("AI_ASSETS_OPS_DB_URL", db_url)
    out = tmp_path / "rows.jsonl"
    pending = CliRunner().invoke(main, ["review", "export", "--format", "jsonl", "--out", str(out)])
    assert pending.exit_code == 0 and pending.output.startswith("0 row(s)"), "pending decisions are no labels yet"
    apply_pending(ops, POLICY, AuditContext("pipeline run apply-1", "apply-1"))
    result = CliRunner().invoke(main, ["review", "export", "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("2 row(s) written")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["input"]["message_id"], r["human_output"]["intent"], r["model_output"]["intent"],
                   r["provenance"]["reviewer"]) for r in rows) == [
        ("m-1", "card_delivery_estimate", "card_arrival", "alice"), ("m-2", "card_arrival", "card_arrival", "alice")]
    bad = CliRunner().invoke(main, ["review", "export", "--format", "jsonl", "--out", str(tmp_path / "no" / "x")])
    assert bad.exit_code == 1 and "does not exist" in bad.output
    with ops.sessions.read() as s:
        assert s.scalar(select(func.count()).select_from(ReviewDecision)) == 2
