"""Reviewers' decisions applied through the action path, on SQLite and PostgreSQL: every kind's
case change, outbox rows and audit rows; nothing applied twice (re-runs, concurrent runs); a
case a person changed after the reviewer read it is not written over."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, insert, select, text, update

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, email_key, idempotency_key, topic, triage
from ai_assets.ops_db import AuditContext, AuditEvent, pipeline_actor
from ai_assets.ops_db.tables import (
    Action,
    AuditEntry,
    Case,
    CaseHistory,
    OutboxMessage,
    ReviewDecision,
    ReviewItem,
)
from ai_assets.ops_db.types import utcnow
from ai_assets.review.apply import (
    REVIEW_APPLIED,
    REVIEW_FAILED,
    TAKEN,
    ApplyReport,
    apply_pending,
    correction_email_key,
    decision_event_key,
)
from ai_assets.review.decisions import record_decision
from ai_assets_tests.ops_db import conftest as ops_db_fixtures

# The operations database on SQLite and PostgreSQL (ai_assets_tests/ops_db/conftest.py), as
# fixtures of this module.
pg_module_database, db_url, engine, ops = (ops_db_fixtures.pg_module_database, ops_db_fixtures.db_url,
                                           ops_db_fixtures.engine, ops_db_fixtures.ops)

POLICY = load_policy()
PARTITION = "2026-11-20"
TEXT = "where is my card [CARD]"
ROWS = (Case, CaseHistory, OutboxMessage, AuditEntry, ReviewItem, ReviewDecision)


def message(message_id: str, intent: str = "card_arrival", *, customer: str = "c-1", automated: bool = True,
            review_reason: str | None = None, text: str = TEXT) -> MessageDecision:
    t = triage(intent, automated, review_reason, POLICY)
    content = content_hash(customer, "app", text)
    return MessageDecision(
        message_id=message_id, customer_id=customer, intent=intent, confidence=0.41 if not automated else 0.97,
        decision=t.decision, action=t.action, reason=t.reason, queue=t.queue, priority=t.priority,
        policy_version=POLICY.version, idempotency_key=idempotency_key(message_id, t.action, POLICY.version, content),
        text=text, content_hash=content, model_version="intent_model v1",
        suggestions=((intent, 0.41), ("card_delivery_estimate", 0.3)))


def pipeline(ops, run_id: str = "run-1") -> ActionLedger:
    return ActionLedger(ops.sessions, POLICY, AuditContext(pipeline_actor(run_id), run_id, PARTITION))


def to_review(ops, message_id: str, intent: str = "card_arrival", *, customer: str = "c-1") -> ReviewItem:
    """A message the model was unsure about: the pipeline sends it to review."""
    pipeline(ops).execute_all([message(message_id, intent, customer=customer, automated=False,
                                       review_reason="below_threshold: 0.41 < 0.83")])
    return item_of(ops, message_id)


def item_of(ops, message_id: str) -> ReviewItem:
    with ops.sessions.read() as s:
        return s.scalars(select(ReviewItem).where(ReviewItem.message_id == message_id)).one()


def decide(ops, item: ReviewItem, kind: str, intent: str | None = None, *, reviewer: str = "alice",
           role: str = "reviewer") -> int:
    return record_decision(ops.sessions, reviewer=reviewer, role=role, item_id=item.id, kind=kind, intent=intent,
                           item_version_seen=item.version)


def override(ops, message_id: str, intent: str, compensation: str, *, reviewer: str = "sam") -> int:
    return record_decision(ops.sessions, reviewer=reviewer, role="senior", action_id=action_of(ops, message_id).id,
                           kind="override", intent=intent, compensation=compensation,
                           reason="the customer asked about something else")


def action_of(ops, message_id: str) -> Action:
    with ops.sessions.read() as s:
        return s.scalars(select(Action).where(Action.message_id == message_id)).one()


def apply(ops, run_id: str = "review-run-1", **kwargs) -> ApplyReport:
    return apply_pending(ops, POLICY, AuditContext(pipeline_actor(run_id), run_id), **kwargs)


def decision_row(ops, decision_id: int) -> ReviewDecision:
    with ops.sessions.read() as s:
        return s.get(ReviewDecision, decision_id)


def outbox(ops, message_id: str) -> list[OutboxMessage]:
    with ops.sessions.read() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.message_id == message_id)
                              .order_by(OutboxMessage.id)))


def audit(ops, message_id: str, event: str) -> list[AuditEntry]:
    return ops.audit.entries(message_id, event)


def counts(ops) -> dict[str, int]:
    with ops.sessions.read() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in ROWS}


def the_case(ops, customer: str = "c-1", queue: str = "cards") -> Case:
    with ops.sessions.read() as s:
        return s.scalars(select(Case).where(Case.customer_id == customer, Case.queue == queue)
                         .order_by(Case.id.desc()).limit(1)).one()


# --- approve / correct -----------------------------------------------------------------------


def test_an_approval_opens_the_case_queues_the_email_and_event_and_resolves_the_item(ops):
    item = to_review(ops, "m-1")
    decision_id = decide(ops, item, "approve")
    report = apply(ops)
    assert (report.pending_in, report.applied, report.conflicts, report.failed) == (1, 1, 0, 0)

    route = POLICY.route("card_arrival")
    case = the_case(ops)
    assert (case.queue, case.priority, case.intent, case.version, case.updated_by, case.message_count) == (
        route.queue, route.priority, "card_arrival", 1, "alice", 1)
    [history] = ops.cases.history(case.id)
    assert (history.actor, history.version, history.message_id) == ("alice", 1, "m-1")
    assert history.change["review_decision"] == decision_id and history.change["opened"] is True

    mail, event = outbox(ops, "m-1")
    subject, body = POLICY.templates[route.action].render(case_id=case.id, topic=topic("card_arrival"),
                                                          queue=route.queue, priority=route.priority)
    assert (mail.kind, mail.idempotency_key, mail.destination, mail.subject, mail.payload["body"]) == (
        "email", email_key("m-1"), "c-1@customers.bank.example", subject, body)
    assert mail.partition is None and mail.action_id == action_of(ops, "m-1").id  # the ledger row of the review
    assert (event.kind, event.idempotency_key, event.destination) == (
        "webhook", decision_event_key(decision_id), "case.reviewed")
    assert {k: event.payload[k] for k in ("event", "case_id", "intent", "model_intent", "reviewer_made",
                                          "decision_id", "policy_version")} == {
        "event": "case.reviewed", "case_id": case.id, "intent": "card_arrival", "model_intent": "card_arrival",
        "reviewer_made": True, "decision_id": decision_id, "policy_version": POLICY.version}

    [acted] = audit(ops, "m-1", AuditEvent.ACTION)
    assert (acted.actor, acted.run_id, acted.detail["decision_id"], acted.detail["case_id"]) == (
        "alice", "review-run-1", decision_id, case.id)
    [applied] = audit(ops, "m-1", REVIEW_APPLIED)
    assert (applied.actor, applied.detail["model_intent"], applied.detail["intent"], applied.detail["corrected"],
            applied.detail["applied_by"]) == ("alice", "card_arrival", "card_arrival", False,
                                              pipeline_actor("review-run-1"))

    item = item_of(ops, "m-1")
    assert (item.status, item.resolved_by, item.resolution) == (
        "resolved", "alice", {"decision_id": decision_id, "kind": "approve", "intent": "card_arrival"})
    assert item.resolved_at is not None and item.version == 3  # open 1 -> decided 2 -> resolved 3
    d = decision_row(ops, decision_id)
    assert (d.status, d.applied_run_id) == ("applied", "review-run-1") and d.applied_at is not None
    assert d.result == {"case_id": case.id, "case_version": 1, "email_written": True,
                        "outbox_keys": [email_key("m-1"), decision_event_key(decision_id)]}


def test_a_correction_runs_the_corrected_intents_action_on_the_customers_open_case(ops):
    pipeline(ops).execute_all([message("m-0", "compromised_card")])  # acted: an open fraud case, v1
    fraud = the_case(ops, queue="fraud_and_security")
    item = to_review(ops, "m-1", "card_arrival")
    decision_id = decide(ops, item, "correct", "lost_or_stolen_card")
    assert apply(ops).applied == 1

    fraud = the_case(ops, queue="fraud_and_security")
    assert (fraud.version, fraud.intent, fraud.priority, fraud.message_count, fraud.last_message_id,
            fraud.updated_by) == (2, "lost_or_stolen_card", "P1", 2, "m-1", "alice")
    history = ops.cases.history(fraud.id)
    assert [(h.version, h.actor) for h in history] == [(1, pipeline_actor("run-1")), (2, "alice")]
    assert history[1].change["model_intent"] == "card_arrival" and history[1].change["intent"] == "lost_or_stolen_card"
    with ops.sessions.read() as s:  # no case in the model's queue: the correction says it is not a cards matter
        assert s.scalar(select(func.count()).select_from(Case).where(Case.queue == "cards")) == 0
    mail, event = outbox(ops, "m-1")
    assert mail.subject.startswith("We have your message")  # never automated: the acknowledgement only
    assert event.payload["needs_person"] is True and event.payload["intent"] == "lost_or_stolen_card"
    [applied] = audit(ops, "m-1", REVIEW_APPLIED)
    assert (applied.detail["model_intent"], applied.detail["intent"], applied.detail["corrected"]) == (
        "card_arrival", "lost_or_stolen_card", True)
    assert item_of(ops, "m-1").resolution["intent"] == "lost_or_stolen_card"
    assert decision_row(ops, decision_id).result["case_version"] == 2


def test_a_message_the_customer_already_had_an_email_about_gets_no_second_one(ops):
    item = to_review(ops, "m-1")
    with ops.sessions.write() as s:  # an e-mail about this message already went out (another policy version)
        s.add(OutboxMessage(idempotency_key=email_key("m-1"), action_id=action_of(ops, "m-1").id, message_id="m-1",
                            kind="email", destination="c-1@customers.bank.example", subject="earlier",
                            payload={"body": "earlier"}))
    decision_id = decide(ops, item, "approve")
    apply(ops)
    assert [(o.kind, o.subject) for o in outbox(ops, "m-1")] == [("email", "earlier"), ("webhook", None)]
    assert decision_row(ops, decision_id).result["email_written"] is False


def test_rejections_send_nothing_and_touch_no_case(ops):
    spam, oos = to_review(ops, "m-spam"), to_review(ops, "m-oos", "out_of_scope", customer="c-2")
    spam_id, oos_id = decide(ops, spam, "reject_spam"), decide(ops, oos, "reject_out_of_scope")
    report = apply(ops)
    assert report.applied == 2 and report.by_kind == {"reject_out_of_scope": {"applied": 1},
                                                      "reject_spam": {"applied": 1}}
    assert ops.cases.all() == [] and outbox(ops, "m-spam") == outbox(ops, "m-oos") == []
    assert audit(ops, "m-spam", AuditEvent.ACTION) == []
    assert audit(ops, "m-spam", REVIEW_APPLIED)[0].detail["intent"] is None
    assert audit(ops, "m-oos", REVIEW_APPLIED)[0].detail["intent"] == "out_of_scope"
    assert item_of(ops, "m-spam").resolution == {"decision_id": spam_id, "kind": "reject_spam", "intent": None}
    assert item_of(ops, "m-oos").status == "resolved"
    assert decision_row(ops, oos_id).result == {"case_id": None, "case_version": None, "outbox_keys": [],
                                                "email_written": None}


def test_a_rejection_leaves_the_items_case_as_it_was(ops):
    item = conflicted_item(ops)
    before = the_case(ops)
    decide(ops, item, "reject_spam")
    assert apply(ops).applied == 1
    after = the_case(ops)
    assert (after.id, after.version, after.notes) == (before.id, before.version, before.notes)


# --- idempotency and concurrency ---------------------------------------------------------------


def test_a_rerun_applies_nothing_twice(ops):
    items = [to_review(ops, f"m-{i}", customer=f"c-{i % 3}") for i in range(6)]
    for i, item in enumerate(items):
        decide(ops, item, "approve" if i % 2 else "correct", None if i % 2 else "card_not_working")
    first = apply(ops)
    before = counts(ops)
    second = apply(ops, "review-run-2")
    assert (first.pending_in, first.applied) == (6, 6)
    assert (second.pending_in, second.applied, second.taken) == (0, 0, 0)
    assert counts(ops) == before
    # Settling one decision by hand is no different: a settled decision is never taken up again.
    assert apply_pending(ops, POLICY, AuditContext("x", "r"), limit=10).results == ()


def test_the_limit_takes_the_oldest_first_and_the_rest_next_time(ops):
    ids = [decide(ops, to_review(ops, f"m-{i}", customer=f"c-{i}"), "approve") for i in range(3)]
    assert [r.decision_id for r in apply(ops, limit=2).results] == ids[:2]
    assert [r.decision_id for r in apply(ops, "review-run-2").results] == ids[2:]


def test_two_concurrent_apply_runs_apply_each_decision_once(ops):
    # Several decisions per customer, so the runs also meet on the same case rows.
    items = [to_review(ops, f"m-{i}", customer=f"c-{i % 4}") for i in range(16)]
    for item in items:
        decide(ops, item, "approve")
    reports: dict[str, ApplyReport] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(run_id: str) -> None:
        try:
            start.wait()
            reports[run_id] = apply(ops, run_id)
        except BaseException as exc:  # surfaced below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"review-run-{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Each decision claimed by exactly one run; the other found it settled (taken) or never listed it.
    assert sum(r.pending_in for r in reports.values()) == 16
    assert sum(r.applied for r in reports.values()) == 16 and all(r.balanced for r in reports.values())
    with ops.sessions.read() as s:
        assert set(s.scalars(select(ReviewDecision.status))) == {"applied"}
        runs = dict(s.execute(select(ReviewDecision.id, ReviewDecision.applied_run_id)).all())
        emails = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "email"))
        events = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "webhook"))
        history = s.scalar(select(func.count()).select_from(CaseHistory))
        applied_rows = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.event == REVIEW_APPLIED))
    for run_id, report in reports.items():  # what each run says it applied is what the database says
        assert {r.decision_id for r in report.results if r.outcome == "applied"} == {
            i for i, by in runs.items() if by == run_id}
    assert (emails, events, history, applied_rows) == (16, 16, 16, 16)
    cases = ops.cases.all()
    assert len(cases) == 4 and sorted(c.version for c in cases) == [4, 4, 4, 4]
    assert all(c.message_count == 4 for c in cases)


# --- conflicts -------------------------------------------------------------------------------


def conflicted_item(ops, first: str = "m-0", second: str = "m-1", customer: str = "c-1") -> ReviewItem:
    """A message the pipeline could not act on because bob edited the customer's case after the
    pipeline read it: a review item with the case, at v2."""
    ledger = pipeline(ops)
    ledger.execute_all([message(first, customer=customer)])
    seen = ledger.read_cases([message(second, customer=customer)])
    case = the_case(ops, customer)
    ops.cases.edit(case.id, 1, actor="bob", notes="called the customer")
    assert ledger.execute(message(second, customer=customer), seen).outcome == "conflict"
    item = item_of(ops, second)
    assert item.case_id == case.id
    return item


def test_a_case_a_person_changed_after_the_reviewer_read_it_is_a_conflict_and_the_item_reopens(ops):
    item = conflicted_item(ops)
    decision_id = decide(ops, item, "approve")  # alice reads the case at v2
    case = the_case(ops)
    assert decision_row(ops, decision_id).case_version_seen == 2
    ops.cases.edit(case.id, 2, actor="carol", status="in_progress", assignee="carol")  # v3
    before = counts(ops)

    report = apply(ops)
    assert (report.pending_in, report.applied, report.conflicts, report.failed) == (1, 0, 1, 0)
    d = decision_row(ops, decision_id)
    assert d.status == "conflict" and d.applied_at is None
    assert d.result["changed_by"] == "carol" and d.result["case_version_now"] == 3
    reopened = item_of(ops, "m-1")
    assert (reopened.status, reopened.version) == ("open", item.version + 2)  # decided, then reopened
    [conflict] = [e for e in audit(ops, "m-1", AuditEvent.CONFLICT) if e.detail.get("decision_id") == decision_id]
    assert conflict.actor == "alice" and "carol" in conflict.detail["detail"]
    after = counts(ops)  # only the decision's status, the item's and the conflict's audit row
    assert after == {**before, "audit_log": before["audit_log"] + 1}
    assert the_case(ops).version == 3 and len(outbox(ops, "m-1")) == 0

    # Decided again on the case as it is now: applied.
    again = decide(ops, reopened, "approve")
    assert apply(ops, "review-run-2").applied == 1
    case = the_case(ops)
    assert (case.version, case.updated_by, case.status, case.assignee) == (4, "alice", "in_progress", "carol")
    assert ops.cases.history(case.id)[-1].change["message_added"] == "m-1"
    assert decision_row(ops, again).status == "applied" and item_of(ops, "m-1").status == "resolved"


def test_a_pipeline_run_or_the_reviewer_changing_the_case_meanwhile_is_no_conflict(ops):
    item = conflicted_item(ops)
    first = decide(ops, item, "approve")  # seen v2
    pipeline(ops, "run-2").execute_all([message("m-2")])  # the pipeline adds a message: v3
    second_item = to_review(ops, "m-3")
    with ops.sessions.write() as s:  # alice read the case at v3 for her second item, too
        s.execute(update(ReviewItem).where(ReviewItem.id == second_item.id).values(case_id=the_case(ops).id))
    second = decide(ops, item_of(ops, "m-3"), "correct", "card_not_working")
    assert decision_row(ops, second).case_version_seen == 3
    report = apply(ops)
    # The first applies over the pipeline's v3 (v4); the second over alice's own v4 (v5).
    assert (report.applied, report.conflicts) == (2, 0)
    assert [(h.version, h.actor) for h in ops.cases.history(the_case(ops).id)][-3:] == [
        (3, pipeline_actor("run-2")), (4, "alice"), (5, "alice")]
    assert decision_row(ops, first).result["case_version"] == 4


def test_another_reviewers_applied_decision_meanwhile_is_a_conflict(ops):
    item = conflicted_item(ops)
    mine = decide(ops, item, "approve", reviewer="alice")
    other_item = to_review(ops, "m-3")
    with ops.sessions.write() as s:
        s.execute(update(ReviewItem).where(ReviewItem.id == other_item.id).values(case_id=the_case(ops).id))
    theirs = decide(ops, item_of(ops, "m-3"), "approve", reviewer="dave")  # also read v2
    report = apply(ops)
    assert [(r.decision_id, r.outcome) for r in report.results] == [(mine, "applied"), (theirs, "conflict")]
    assert decision_row(ops, theirs).result["changed_by"] == "alice"


# --- overrides -------------------------------------------------------------------------------


def automatic(ops, message_id: str = "m-1", intent: str = "card_arrival", customer: str = "c-1") -> Action:
    pipeline(ops).execute_all([message(message_id, intent, customer=customer)])
    return action_of(ops, message_id)


def test_a_followup_email_override_sends_one_correction_and_keeps_what_the_model_wrote(ops):
    action = automatic(ops)
    model_rows = [(o.idempotency_key, o.subject) for o in outbox(ops, "m-1")]
    model_audit = [(e.event, e.actor, e.detail) for e in ops.audit.entries("m-1")]
    decision_id = override(ops, "m-1", "card_not_working", "followup_email")
    assert apply(ops).applied == 1

    case = the_case(ops)
    assert (case.version, case.intent, case.queue, case.updated_by) == (2, "card_not_working", "cards", "sam")
    change = ops.cases.history(case.id)[-1].change
    assert (change["model_intent"], change["intent"], change["previous"], change["compensation"]) == (
        "card_arrival", "card_not_working", {"intent": "card_arrival"}, "followup_email")
    rows = outbox(ops, "m-1")
    assert [(o.idempotency_key, o.subject) for o in rows[:2]] == model_rows  # the model's e-mail and event stay
    correction, event = rows[2:]
    subject, body = POLICY.correction_template.render(case_id=case.id, topic="card not working", queue="cards",
                                                      priority=case.priority)
    assert (correction.idempotency_key, correction.subject, correction.payload["body"], correction.action_id) == (
        correction_email_key(action.id), subject, body, action.id)
    assert (event.destination, event.payload["compensation"], event.payload["model_intent"],
            event.payload["intent"], event.payload["reviewer_made"]) == (
        "case.overridden", "followup_email", "card_arrival", "card_not_working", True)
    assert [(e.event, e.actor, e.detail) for e in ops.audit.entries("m-1")][:len(model_audit)] == model_audit
    [acted] = [e for e in audit(ops, "m-1", AuditEvent.ACTION) if e.actor == "sam"]
    assert (acted.detail["action"], acted.detail["overridden_action_id"], acted.detail["model_intent"]) == (
        "override:followup_email", action.id, "card_arrival")
    assert action_of(ops, "m-1").outcome == "acted"  # the ledger row is not rewritten
    assert decision_row(ops, decision_id).result["email_written"] is True


def test_a_second_override_of_the_same_action_sends_no_second_correction(ops):
    action = automatic(ops)
    first = override(ops, "m-1", "card_not_working", "followup_email")
    ops.cases.edit(the_case(ops).id, 1, actor="bob", notes="looked at it")  # after sam read v1: a conflict
    assert apply(ops).conflicts == 1 and decision_row(ops, first).status == "conflict"
    override(ops, "m-1", "card_not_working", "followup_email")
    assert apply(ops, "review-run-2").applied == 1
    with ops.sessions.write() as s:  # a third decision slipping past the index would still find the key
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.idempotency_key == correction_email_key(action.id))) == 1


def test_a_reopen_override_opens_a_closed_case_under_the_corrected_intent(ops):
    automatic(ops)
    case = the_case(ops)
    ops.cases.edit(case.id, 1, actor="bob", status="closed")  # v2, closed by an agent
    decision_id = override(ops, "m-1", "card_not_working", "reopen_case")  # sam reads v2
    assert apply(ops).applied == 1
    case = the_case(ops)
    assert (case.status, case.intent, case.queue, case.version) == ("open", "card_not_working", "cards", 3)
    assert ops.cases.history(case.id)[-1].change["previous"] == {"intent": "card_arrival", "status": "closed"}
    assert [o.destination for o in outbox(ops, "m-1")][-1] == "case.overridden"
    assert len([o for o in outbox(ops, "m-1") if o.kind == "email"]) == 1  # no e-mail for a reopen
    assert decision_row(ops, decision_id).result["case_version"] == 3


def test_reopening_where_the_customer_has_another_open_case_is_a_conflict(ops):
    automatic(ops)
    first_case = the_case(ops)
    ops.cases.edit(first_case.id, 1, actor="bob", status="closed")
    automatic(ops, "m-2", "card_delivery_estimate")  # a new cards case for the same customer
    before = counts(ops)
    decision_id = override(ops, "m-1", "card_not_working", "reopen_case")
    assert apply(ops).conflicts == 1
    d = decision_row(ops, decision_id)
    assert d.status == "conflict" and d.result["other_case_id"] == the_case(ops).id
    assert ops.cases.get(first_case.id).status == "closed"
    after = counts(ops)
    assert after["cases"] == before["cases"] and after["case_history"] == before["case_history"]
    assert after["outbox"] == before["outbox"]


def test_a_requeue_override_moves_the_case_to_the_corrected_intents_queue(ops):
    automatic(ops)
    case_id = the_case(ops).id
    override(ops, "m-1", "lost_or_stolen_card", "requeue")
    assert apply(ops).applied == 1
    case = ops.cases.get(case_id)
    route = POLICY.route("lost_or_stolen_card")
    assert (case.queue, case.priority, case.intent, case.version, case.updated_by) == (
        route.queue, route.priority, "lost_or_stolen_card", 2, "sam")
    assert ops.cases.history(case_id)[-1].change["previous"] == {
        "intent": "card_arrival", "queue": "cards", "priority": POLICY.route("card_arrival").priority}
    event = outbox(ops, "m-1")[-1]
    assert (event.payload["queue"], event.payload["priority"]) == (route.queue, route.priority)


def test_requeueing_into_a_queue_where_the_customer_has_an_open_case_is_a_conflict(ops):
    automatic(ops)
    automatic(ops, "m-2", "compromised_card")  # the customer's open fraud case
    case_id = the_case(ops).id
    before = counts(ops)
    decision_id = override(ops, "m-1", "lost_or_stolen_card", "requeue")
    report = apply(ops)
    assert (report.conflicts, report.applied) == (1, 0)
    assert ops.cases.get(case_id).queue == "cards"
    assert decision_row(ops, decision_id).result["queue"] == "fraud_and_security"
    after = counts(ops)
    assert {k: after[k] for k in ("cases", "case_history", "outbox")} == {
        k: before[k] for k in ("cases", "case_history", "outbox")}


# --- failures and the balance ----------------------------------------------------------------


def test_decisions_that_cannot_be_applied_fail_write_nothing_else_and_the_counts_balance(ops):
    good = decide(ops, to_review(ops, "m-1"), "approve")
    # A customer id that is no deliverable address (validation refuses such ids; data from elsewhere).
    bad_item = to_review(ops, "m-2", customer="c-2")
    with ops.sessions.write() as s:
        s.execute(update(ReviewItem).where(ReviewItem.id == bad_item.id).values(customer_id="x@evil.example, c"))
    undeliverable = decide(ops, item_of(ops, "m-2"), "approve")
    conflict_item = conflicted_item(ops, "m-8", "m-9", customer="c-9")
    conflicted = decide(ops, conflict_item, "approve")
    ops.cases.edit(the_case(ops, "c-9").id, 2, actor="carol", notes="again")
    before = counts(ops)

    report = apply(ops)
    assert (report.pending_in, report.applied, report.conflicts, report.failed) == (3, 1, 1, 1)
    assert report.balanced and report.pending_in == report.applied + report.conflicts + report.failed
    summary = report.summary()
    assert {k: summary[k] for k in ("pending_in", "applied", "conflicts", "failed")} == {
        "pending_in": 3, "applied": 1, "conflicts": 1, "failed": 1}
    assert summary["by_kind"] == {"approve": {"applied": 1, "conflict": 1, "failed": 1}}
    with ops.sessions.read() as s:
        statuses = dict(s.execute(select(ReviewDecision.id, ReviewDecision.status)).all())
    assert statuses == {good: "applied", undeliverable: "failed", conflicted: "conflict"}
    d = decision_row(ops, undeliverable)
    assert "deliverable" in d.result["error"] and "evil" not in d.result["error"]
    assert item_of(ops, "m-2").status == "decided"  # an admin looks; the check alerts
    assert outbox(ops, "m-2") == [] and [e.actor for e in audit(ops, "m-2", REVIEW_FAILED)] == ["alice"]
    after = counts(ops)
    assert after["outbox"] == before["outbox"] + 2 and after["cases"] == before["cases"] + 1  # the good one's


def test_an_item_without_a_ledger_row_fails_instead_of_writing_to_another_messages_email(ops):
    pipeline(ops).execute_all([message("m-1")])
    other = message("m-1", customer="c-2", text="a different message")
    assert pipeline(ops, "run-2").execute_all([other])[0].outcome == "id_conflict"
    with ops.sessions.read() as s:
        item = s.scalars(select(ReviewItem).where(ReviewItem.idempotency_key == other.idempotency_key)).one()
    decision_id = decide(ops, item, "correct", "card_not_working")
    assert apply(ops).failed == 1
    assert "by hand" in decision_row(ops, decision_id).result["error"]
    assert len(outbox(ops, "m-1")) == 2  # the first message's only


def test_a_decision_another_run_settled_is_reported_as_taken(ops):
    decision_id = decide(ops, to_review(ops, "m-1"), "approve")
    with ops.sessions.write() as s:  # what a concurrent run did between our listing and our claim
        s.execute(update(ReviewDecision).where(ReviewDecision.id == decision_id).values(status="applied"))
    from ai_assets.review.apply import DecisionApplier

    outcome = DecisionApplier(ops, POLICY, AuditContext("x", "r")).apply_one(decision_id)
    assert (outcome.outcome, outcome.kind) == (TAKEN, "approve")
    assert ApplyReport((outcome,)).pending_in == 0 and ApplyReport((outcome,)).balanced


@pytest.mark.parametrize("kind", ["approve", "reject_spam"])
def test_every_applied_decision_leaves_the_item_resolved_by_its_reviewer(ops, kind):
    item = to_review(ops, "m-1")
    decide(ops, item, kind, reviewer="erin")
    apply(ops)
    item = item_of(ops, "m-1")
    assert (item.status, item.resolved_by) == ("resolved", "erin")


def test_the_days_action_tally_still_balances_after_reviewers_acted(ops):
    """A re-run or backfill of the day checks the ledger's own work (every_decision_acted_once):
    what reviewers' decisions wrote later must not count as duplicated or half-done there."""
    from ai_assets.actions.ledger import Tally, action_tally

    decide(ops, to_review(ops, "m-1"), "approve")
    automatic(ops, "m-2", customer="c-2")
    override(ops, "m-2", "card_not_working", "followup_email")
    automatic(ops, "m-3", customer="c-3")
    override(ops, "m-3", "lost_or_stolen_card", "requeue")
    assert apply(ops).applied == 3
    assert action_tally(ops, ["m-1", "m-2", "m-3"], POLICY.version) == Tally()
    with ops.sessions.write() as s:  # the tally still sees a duplicate e-mail the ledger itself wrote
        s.add(OutboxMessage(idempotency_key="dup", action_id=action_of(ops, "m-2").id, message_id="m-2",
                            kind="email", destination="c-2@customers.bank.example", subject="again",
                            payload={"body": "again"}))
    assert action_tally(ops, ["m-1", "m-2", "m-3"], POLICY.version) == Tally(duplicated=1)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers never interleave
def test_a_case_opened_concurrently_by_another_writer_is_updated_not_duplicated(ops):
    """The applier looks for the customer's open case, finds none and inserts one while another
    writer's insert of that case is uncommitted: the unique index makes it wait, then refuses it;
    the effects are run again (savepoint) and update the case the other writer opened."""
    db = ops
    item = to_review(db, "m-1")
    decide(db, item, "approve")
    other = db.engine.connect()
    tx = other.begin()
    now = utcnow()
    other.execute(insert(Case).values(customer_id="c-1", queue="cards", priority="P2", intent="card_arrival",
                                      message_count=1, last_message_id="m-0", version=1, opened_at=now,
                                      updated_at=now, updated_by=pipeline_actor("run-9")))
    other.execute(insert(CaseHistory).values(case_id=select(func.max(Case.id)).scalar_subquery(), version=1,
                                             actor=pipeline_actor("run-9"), change={"opened": True},
                                             message_id="m-0", at=now))
    reports: list[ApplyReport] = []
    worker = threading.Thread(target=lambda: reports.append(apply(db)))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        # Until the applier waits on the uncommitted insert (autocommit: each query a fresh look at
        # pg_stat_activity, which a transaction would otherwise keep as its first snapshot).
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            while not watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND datname = current_database()")).scalar():
                assert time.monotonic() < deadline, "the applier never waited for the other insert"
                time.sleep(0.02)
        tx.commit()
    finally:
        other.close()
        worker.join()
    [report] = reports
    assert (report.applied, report.failed) == (1, 0)
    [case] = db.cases.all()
    assert (case.version, case.message_count, case.updated_by, case.priority) == (2, 2, "alice", "P2")
