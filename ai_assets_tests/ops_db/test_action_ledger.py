"""Acting on messages: atomic per message, idempotent, and never overwriting a person —
on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy import func, select, text

from ai_assets.actions.ledger import ALREADY_DONE, ActionLedger, MessageDecision, Tally, action_tally, outcome_counts
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, idempotency_key, triage
from ai_assets.ops_db import AuditContext, AuditEvent, CaseConflict, pipeline_actor
from ai_assets.ops_db.tables import Action, AuditEntry, Case, CaseHistory, OutboxMessage, ReviewItem

POLICY = load_policy()


def decision(message_id: str, intent: str = "card_arrival", *, customer: str = "c-1", automated: bool = True,
             review_reason: str | None = None, policy=POLICY, text: str = "my card [CARD] is late") -> MessageDecision:
    t = triage(intent, automated, review_reason, policy)
    content = content_hash(customer, "app", text)
    return MessageDecision(
        message_id=message_id, customer_id=customer, intent=intent, confidence=0.97, decision=t.decision,
        action=t.action, reason=t.reason, queue=t.queue, priority=t.priority, policy_version=policy.version,
        idempotency_key=idempotency_key(message_id, t.action, policy.version, content), text=text,
        content_hash=content,
        model_version="intent_model v1", model_call={"tier": "local", "cost_usd": 0.0})


def ledger(ops, run_id: str = "run-1", policy=POLICY, partition: str = "2026-11-20") -> ActionLedger:
    return ActionLedger(ops.sessions, policy, AuditContext(pipeline_actor(run_id), run_id, partition))


def count(ops, model, **where) -> int:
    with ops.sessions.read() as s:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return s.scalar(query)


def test_acting_opens_a_case_writes_the_outbox_and_the_audit_in_one_go(ops):
    results = ledger(ops).execute_all([decision("m-1"), decision("m-2", "card_not_working", customer="c-2")])
    assert [r.outcome for r in results] == ["acted", "acted"]
    cases = ops.cases.all()
    assert [(c.customer_id, c.queue, c.version, c.message_count) for c in cases] == [
        ("c-1", "cards", 1, 1), ("c-2", "cards", 1, 1)]
    with ops.sessions.read() as s:
        mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")
                         .order_by(OutboxMessage.message_id)).all()
        assert [m.destination for m in mail] == ["c-1@customers.bank.example", "c-2@customers.bank.example"]
        assert mail[0].subject == f"Your question about card arrival (case {cases[0].id})"
        assert "We have received your message about card not working" in mail[1].payload["body"]
    assert count(ops, OutboxMessage, kind="webhook") == 2
    events = [e.event for e in ops.audit.entries("m-1")]
    assert events == [AuditEvent.MODEL_CALL, AuditEvent.DECISION, AuditEvent.ACTION]


def test_a_second_message_of_the_customer_updates_the_same_case(ops):
    ledger(ops).execute_all([decision("m-1"), decision("m-2", "lost_or_stolen_card")])
    ledger(ops).execute_all([decision("m-3", "card_delivery_estimate")])
    cards, fraud = sorted(ops.cases.all(), key=lambda c: c.queue)
    assert (cards.queue, cards.version, cards.message_count, cards.last_message_id) == ("cards", 2, 2, "m-3")
    assert (fraud.queue, fraud.priority) == ("fraud_and_security", "P1")
    assert [h.version for h in ops.cases.history(cards.id)] == [1, 2]


def test_rerunning_the_same_decisions_acts_on_nothing_twice(ops):
    batch = [decision(f"m-{i}", customer=f"c-{i % 3}") for i in range(9)] + [
        decision("m-r", automated=False, review_reason="below_threshold")]
    first = outcome_counts(ledger(ops, "run-1").execute_all(batch))
    before = {m: count(ops, m) for m in (Action, Case, CaseHistory, OutboxMessage, ReviewItem, AuditEntry)}
    second = outcome_counts(ledger(ops, "run-2").execute_all(batch))
    assert first == {"acted": 9, "review": 1, "conflict": 0, "id_conflict": 0, ALREADY_DONE: 0, "redelivered": 0}
    assert second == {"acted": 0, "review": 0, "conflict": 0, "id_conflict": 0, ALREADY_DONE: 10, "redelivered": 0}
    assert {m: count(ops, m) for m in before} == before


def test_a_message_read_differently_on_a_rerun_is_still_acted_on_once(ops):
    ledger(ops).execute_all([decision("m-1", automated=False, review_reason="below_threshold")])
    # A new model is sure now: a different action, same policy version -> nothing more happens.
    assert ledger(ops, "run-2").execute_all([decision("m-1")])[0].outcome == ALREADY_DONE
    assert count(ops, Case) == 0 and count(ops, OutboxMessage) == 0 and count(ops, ReviewItem) == 1


def test_a_message_delivered_again_on_a_later_day_is_counted_and_not_acted_on_twice(ops):
    first = ledger(ops, "run-1", partition="2026-11-20").execute_all([decision("m-1")])[0]
    before = {m: count(ops, m) for m in (Action, Case, CaseHistory, OutboxMessage, ReviewItem)}
    again = ledger(ops, "run-2", partition="2026-11-21").execute_all([decision("m-1")])[0]
    assert (again.outcome, again.state, again.case_id) == ("redelivered", "acted", first.case_id)
    assert {m: count(ops, m) for m in before} == before


def test_another_message_reusing_an_id_goes_to_review_and_never_touches_the_first_case(ops):
    first = ledger(ops, "run-1", partition="2026-11-20").execute_all([decision("m-1", customer="c-1")])[0]
    other = decision("m-1", customer="c-2", text="please close my account")
    result = ledger(ops, "run-2", partition="2026-11-21").execute_all([other])[0]
    assert (result.outcome, result.state, result.case_id) == ("id_conflict", "id_conflict", None)
    assert count(ops, Case) == 1 and count(ops, OutboxMessage, message_id="m-1") == 2  # the first's only
    assert count(ops, ReviewItem, idempotency_key=other.idempotency_key) == 1
    assert count(ops, AuditEntry, message_id="m-1", event="conflict") == 1
    [case] = ops.cases.all()
    assert (case.id, case.customer_id, case.version) == (first.case_id, "c-1", 1)
    # Re-running either day changes nothing; the tally tells the two messages apart.
    again = ledger(ops, "run-3", partition="2026-11-21").execute_all([other])[0]
    assert (again.outcome, again.state) == (ALREADY_DONE, "id_conflict")
    assert ledger(ops, "run-4", partition="2026-11-20").execute_all([decision("m-1")])[0].outcome == ALREADY_DONE
    contents = {"m-1": (other.content_hash, other.idempotency_key)}
    assert action_tally(ops, ["m-1"], POLICY.version, contents=contents) == Tally()


def test_the_tally_finds_a_message_that_vanished_behind_a_reused_id(ops):
    ledger(ops).execute_all([decision("m-1", customer="c-1")])
    other = decision("m-1", customer="c-2", text="a different message")
    # Without the content, the first message's row hides the second (what the check used to see).
    assert action_tally(ops, ["m-1"], POLICY.version) == Tally()
    assert action_tally(ops, ["m-1"], POLICY.version,
                        contents={"m-1": (other.content_hash, other.idempotency_key)}) == Tally(lost=1)


def test_review_decisions_create_a_review_item_and_send_nothing(ops):
    results = ledger(ops).execute_all([
        decision("m-oos", "out_of_scope", automated=False, review_reason="out_of_scope"),
        decision("m-low", automated=False, review_reason="below_threshold: 0.41 < 0.83")])
    assert [r.outcome for r in results] == ["review", "review"]
    assert count(ops, Case) == 0 and count(ops, OutboxMessage) == 0
    with ops.sessions.read() as s:
        reasons = sorted(s.scalars(select(ReviewItem.reason)))
    assert reasons == ["below_threshold: 0.41 < 0.83", "out_of_scope"]


def test_never_automated_intents_are_acted_on_with_a_person_notified_and_no_answer(ops):
    ledger(ops).execute_all([decision("m-1", "compromised_card")])
    with ops.sessions.read() as s:
        mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).one()
        event = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "webhook")).one()
    assert mail.subject.startswith("We have your message")  # the acknowledgement template
    assert event.payload["needs_person"] is True and event.payload["priority"] == "P1"


def test_a_persons_edit_after_the_pipeline_read_is_never_overwritten(ops):
    ledger(ops).execute_all([decision("m-1")])
    (case,) = ops.cases.all()
    pipeline = ledger(ops, "run-2")
    batch = [decision("m-2", "card_delivery_estimate")]
    seen = pipeline.read_cases(batch)
    ops.cases.edit(case.id, case.version, actor="agent.alice", assignee="alice", notes="called the customer")
    result = pipeline.execute(batch[0], seen)
    assert result.outcome == "conflict"
    after = ops.cases.get(case.id)
    assert (after.version, after.assignee, after.notes, after.message_count) == (2, "alice", "called the customer", 1)
    with ops.sessions.read() as s:
        review = s.scalars(select(ReviewItem)).one()
    assert review.reason.startswith("case_conflict: case") and "agent.alice" in review.reason
    assert review.case_id == case.id
    assert [e.event for e in ops.audit.entries("m-2")][-2:] == [AuditEvent.CONFLICT, AuditEvent.REVIEW]
    assert count(ops, OutboxMessage, message_id="m-2") == 0


def test_people_edit_with_optimistic_concurrency_too(ops):
    ledger(ops).execute_all([decision("m-1")])
    (case,) = ops.cases.all()
    ops.cases.edit(case.id, 1, actor="agent.alice", notes="first")
    with pytest.raises(CaseConflict, match="version 2, not 1"):
        ops.cases.edit(case.id, 1, actor="agent.bob", notes="second, from a stale screen")
    with pytest.raises(ValueError, match="a person's name"):
        ops.cases.edit(case.id, 2, actor="pipeline run x", notes="impersonation")
    assert ops.cases.get(case.id).notes == "first"


def _fail_outbox_inserts_for(ops, message_id: str) -> None:
    """A real database fault in the middle of the message's transaction (after the case and
    ledger rows, at the outbox insert)."""
    with ops.engine.begin() as conn:
        if ops.engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox WHEN NEW.message_id = "
                                 f"'{message_id}' BEGIN SELECT RAISE(ABORT, 'injected outbox failure'); END")
        else:
            conn.exec_driver_sql(f"""
                CREATE FUNCTION fail_outbox() RETURNS trigger AS $$ BEGIN
                  IF NEW.message_id = '{message_id}' THEN RAISE EXCEPTION 'injected outbox failure'; END IF;
                  RETURN NEW; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION fail_outbox();""")


def test_a_failure_mid_action_leaves_no_trace_and_the_retry_completes(ops):
    _fail_outbox_inserts_for(ops, "m-2")
    batch = [decision("m-1", customer="c-1"), decision("m-2", customer="c-2"), decision("m-3", customer="c-3")]
    pipeline = ledger(ops)
    seen = pipeline.read_cases(batch)
    assert pipeline.execute(batch[0], seen).outcome == "acted"
    with pytest.raises(Exception, match="injected outbox failure"):
        pipeline.execute(batch[1], seen)
    # Nothing of m-2: no case for c-2, no ledger row, no audit row.
    assert count(ops, Case, customer_id="c-2") == 0
    assert count(ops, Action, message_id="m-2") == 0 and count(ops, AuditEntry, message_id="m-2") == 0
    with ops.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER fail_outbox" + ("" if ops.engine.dialect.name == "sqlite" else " ON outbox")))
    retry = outcome_counts(ledger(ops, "run-1-retry").execute_all(batch))
    assert retry == {"acted": 2, "review": 0, "conflict": 0, "id_conflict": 0, ALREADY_DONE: 1, "redelivered": 0}
    assert count(ops, Action) == 3 and count(ops, Case) == 3 and count(ops, OutboxMessage) == 6


def test_a_policy_change_acts_under_a_new_key_and_leaves_old_actions_alone(ops):
    ledger(ops).execute_all([decision("m-1")])
    old = {(a.idempotency_key, a.policy_version) for a in _actions(ops)}
    new_policy = dataclasses.replace(POLICY, version="routing-test.2")
    assert ledger(ops, "run-2", new_policy).execute_all([decision("m-1", policy=new_policy)])[0].outcome == "acted"
    actions = _actions(ops)
    assert len(actions) == 2 and old <= {(a.idempotency_key, a.policy_version) for a in actions}
    assert len({a.idempotency_key for a in actions}) == 2
    # The customer is not written to twice; the case system hears of the new action; the
    # case counts the message once.
    assert count(ops, OutboxMessage, kind="email") == 1 and count(ops, OutboxMessage, kind="webhook") == 2
    (case,) = ops.cases.all()
    assert (case.message_count, case.version) == (1, 2)
    change = ops.audit.entries("m-1", AuditEvent.POLICY_CHANGE)
    assert [(e.policy_version, e.detail["previous_policy_version"]) for e in change] == [
        ("routing-test.2", POLICY.version)]


def test_a_decision_from_another_policy_version_is_refused(ops):
    other = dataclasses.replace(POLICY, version="routing-other")
    with pytest.raises(ValueError, match="under policy routing-other"):
        ledger(ops).execute_all([decision("m-1", policy=other)])


def _actions(ops) -> list[Action]:
    with ops.sessions.read() as s:
        return list(s.scalars(select(Action).order_by(Action.id)))


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_race_people_editing_while_the_pipeline_acts_loses_no_edit(ops):
    """People edit the same cases, with real concurrency on PostgreSQL, while the pipeline
    acts: every edit a person made is in the history and in the case, versions never skip or
    repeat, and every pipeline message is acted on or sent to review, once."""
    customers = [f"c-{i}" for i in range(5)]
    ledger(ops, "seed").execute_all([decision(f"seed-{c}", customer=c) for c in customers])
    batch = [decision(f"m-{i}", "card_delivery_estimate", customer=customers[i % 5]) for i in range(200)]
    edits: list[tuple[int, int, str]] = []
    stop = threading.Event()

    def person(name: str) -> None:
        n = 0
        while not stop.is_set():
            for case in ops.cases.all():
                n += 1
                note = f"{name} note {n}"
                try:
                    version = ops.cases.edit(case.id, case.version, actor=name, notes=note)
                    edits.append((case.id, version, note))
                except CaseConflict:
                    pass

    people = [threading.Thread(target=person, args=(f"agent.{n}",)) for n in ("alice", "bob")]
    for t in people:
        t.start()
    try:
        results = ledger(ops, "run-race").execute_all(batch)
    finally:
        stop.set()
        for t in people:
            t.join()
    counts = outcome_counts(results)
    assert counts["acted"] + counts["conflict"] == 200 and counts[ALREADY_DONE] == 0
    assert edits, "the people made no edit: the race did not happen"
    assert counts["conflict"] > 0, "no conflict: the race did not overlap the pipeline"
    assert count(ops, ReviewItem) == counts["conflict"]
    for case in ops.cases.all():
        history = ops.cases.history(case.id)
        assert [h.version for h in history] == list(range(1, case.version + 1))
        mine = [(v, note) for cid, v, note in edits if cid == case.id]
        recorded = {(h.version, h.change.get("notes")) for h in history if h.actor.startswith("agent.")}
        assert set(mine) == recorded  # every successful human edit, nothing else under a person's name
        if mine:
            assert case.notes == max(mine)[1]  # the pipeline never overwrote the latest human note
    acted = count(ops, Action, outcome="acted") - len(customers)
    assert acted == counts["acted"] == count(ops, OutboxMessage, kind="webhook") - len(customers)


def test_two_pipeline_runs_acting_at_once_share_cases_without_conflicts(ops):
    """Two runs (say the daily run and a backfill of another day) act at the same moment for
    the same new customers: one open case each, every message acted on once, no conflict —
    another run's change is not a person's."""
    customers = [f"c-{i}" for i in range(4)]
    runs = {name: [decision(f"{name}-{i}", "card_delivery_estimate", customer=customers[i % 4]) for i in range(40)]
            for name in ("daily", "backfill")}
    results: dict[str, list] = {}
    barrier = threading.Barrier(2)

    def act(name: str) -> None:
        pipeline = ledger(ops, name)
        seen = pipeline.read_cases(runs[name])
        barrier.wait()
        results[name] = [pipeline.execute(d, seen) for d in runs[name]]

    threads = [threading.Thread(target=act, args=(name,)) for name in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [outcome_counts(results[name]) for name in runs] == [
        {"acted": 40, "review": 0, "conflict": 0, "id_conflict": 0, ALREADY_DONE: 0, "redelivered": 0}] * 2
    cases = ops.cases.all()
    assert sorted(c.customer_id for c in cases) == customers
    assert sum(c.message_count for c in cases) == 80
    for case in cases:
        assert [h.version for h in ops.cases.history(case.id)] == list(range(1, case.version + 1))


def test_a_version_bump_without_history_is_someone_elses_change(ops):
    """A CRM or a hand-written UPDATE that bumps the version without a history row: the
    pipeline fails closed and sends the message to review."""
    ledger(ops).execute_all([decision("m-1")])
    (case,) = ops.cases.all()
    pipeline = ledger(ops, "run-2")
    batch = [decision("m-2", "card_delivery_estimate")]
    seen = pipeline.read_cases(batch)
    with ops.engine.begin() as conn:
        conn.execute(text("UPDATE cases SET version = version + 1, priority = 'P1', updated_by = 'crm' "
                          "WHERE id = :id"), {"id": case.id})
    assert pipeline.execute(batch[0], seen).outcome == "conflict"
    assert ops.cases.get(case.id).priority == "P1"


def test_a_decision_that_does_not_match_the_policy_is_refused(ops):
    tampered = dataclasses.replace(decision("m-1"), action="fraud_escalation")
    with pytest.raises(ValueError, match="does not match policy"):
        ledger(ops).execute_all([tampered])
    assert count(ops, Action) == 0


def test_the_tally_finds_lost_doubled_and_half_done_actions(ops):
    batch = [decision(f"m-{i}", customer=f"c-{i}") for i in range(4)] + [
        decision("m-r", automated=False, review_reason="below_threshold")]
    ledger(ops).execute_all(batch)
    ids = [d.message_id for d in batch]
    assert action_tally(ops, ids, POLICY.version) == Tally()
    assert action_tally(ops, [*ids, "m-never"], POLICY.version) == Tally(lost=1)
    with ops.engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox WHERE message_id = 'm-1' AND kind = 'webhook'"))
        conn.execute(text("DELETE FROM review_items WHERE message_id = 'm-r'"))
        case_id = conn.execute(text("SELECT case_id FROM actions WHERE message_id = 'm-2'")).scalar()
        conn.execute(text("INSERT INTO case_history (case_id, version, actor, change, message_id, at) "
                          "VALUES (:c, 99, 'pipeline run x', '{}', 'm-2', '2026-01-01 00:00:00')"), {"c": case_id})
    assert action_tally(ops, ids, POLICY.version) == Tally(duplicated=1, half_done=2)
