"""The review queue as reviewers read it — order by risk and age, filters, counts, paging, the
next item, one item's detail, the automatic actions for overrides — on SQLite and PostgreSQL,
with items written by the real `ActionLedger`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, idempotency_key, triage
from ai_assets.ops_db import AuditContext, pipeline_actor
from ai_assets.ops_db.tables import Action, ReviewItem
from ai_assets.ops_db.types import utcnow
from ai_assets.review.decisions import record_decision
from ai_assets.review.queue import (
    QueueFilter,
    QueueFilterError,
    action_detail,
    automatic_actions,
    counts,
    item_detail,
    labels,
    list_items,
    mask_customer_id,
    next_item_id,
    visible_queues,
)
from ai_assets_tests.ops_db import conftest as ops_db_fixtures

pg_module_database, db_url, engine, ops = (ops_db_fixtures.pg_module_database, ops_db_fixtures.db_url,
                                           ops_db_fixtures.engine, ops_db_fixtures.ops)

POLICY = load_policy()
SENIOR = QueueFilter(visible=visible_queues("senior"))
STANDARD = QueueFilter(visible=visible_queues("reviewer"))


def decision(message_id: str, intent: str = "card_arrival", *, customer: str = "cust-0001",
             reason: str | None = "below_threshold: 0.41 < 0.70", automated: bool = False,
             text: str = "where is my new card", suggestions=(("card_arrival", 0.41), ("card_delivery_estimate", 0.3),
                                                            ("card_not_working", 0.1))) -> MessageDecision:
    t = triage(intent, automated, None if automated else reason, POLICY)
    content = content_hash(customer, "app", text)
    return MessageDecision(
        message_id=message_id, customer_id=customer, intent=intent, confidence=0.41 if not automated else 0.97,
        decision=t.decision, action=t.action, reason=t.reason, queue=t.queue, priority=t.priority,
        policy_version=POLICY.version, idempotency_key=idempotency_key(message_id, t.action, POLICY.version, content),
        text=text, content_hash=content, model_version="intent_model v3", model_call={"tier": "local"},
        suggestions=tuple(suggestions))


def ledger(ops) -> ActionLedger:
    return ActionLedger(ops.sessions, POLICY, AuditContext(pipeline_actor("run-1"), "run-1", "2026-11-20"))


def item_ids(ops) -> dict[str, int]:
    with ops.sessions.read() as s:
        return {m: i for m, i in s.query(ReviewItem.message_id, ReviewItem.id)}


def set_item(ops, item_id: int, **values) -> None:
    with ops.sessions.write() as s:
        s.execute(update(ReviewItem).where(ReviewItem.id == item_id).values(**values))


@pytest.fixture
def seeded(ops):
    """Five review items of three priorities and two reasons, two of them overdue."""
    ledger(ops).execute_all([
        decision("m-p3-late", "card_arrival"),
        decision("m-p1", "lost_or_stolen_card", customer="cust-0002", reason="needs_human"),
        decision("m-p2", "card_not_working", customer="cust-0003"),
        decision("m-p1-later", "compromised_card", customer="cust-0004"),
        decision("m-p3-later", "exchange_rate", customer="cust-0005", reason="llm_local_disagree: local card_arrival"),
    ])
    ids = item_ids(ops)
    now = utcnow()
    set_item(ops, ids["m-p3-late"], due_at=now - timedelta(hours=2), created_at=now - timedelta(hours=30))
    set_item(ops, ids["m-p3-later"], due_at=now - timedelta(hours=1), created_at=now - timedelta(hours=25))
    set_item(ops, ids["m-p1"], due_at=now + timedelta(minutes=30))
    set_item(ops, ids["m-p1-later"], due_at=now + timedelta(minutes=50))
    set_item(ops, ids["m-p2"], due_at=now + timedelta(hours=5))
    return ids


def order(rows) -> list[str]:
    return [r.message_id for r in rows]


def test_the_queue_is_ordered_overdue_first_then_priority_then_due_time(ops, seeded):
    rows, total = list_items(ops.sessions, STANDARD)
    assert total == 5
    assert order(rows) == ["m-p3-late", "m-p3-later", "m-p1", "m-p1-later", "m-p2"]
    assert [r.overdue for r in rows] == [True, True, False, False, False]
    first = rows[0]
    assert (first.priority, first.intent, first.reason, first.customer) == (
        "P3", "card_arrival", "below_threshold: 0.41 < 0.70", "…0001")
    assert first.preview == "where is my new card"


def test_an_item_without_a_due_time_counts_as_due_when_created(ops, seeded):
    set_item(ops, seeded["m-p2"], due_at=None, created_at=utcnow() - timedelta(hours=40))
    rows, _ = list_items(ops.sessions, STANDARD)
    assert order(rows)[:3] == ["m-p2", "m-p3-late", "m-p3-later"], "overdue, the P2 before the P3s"


def test_ties_are_broken_by_id(ops, seeded):
    due = utcnow() + timedelta(hours=3)
    for m in ("m-p1", "m-p1-later"):
        set_item(ops, seeded[m], due_at=due)
    rows, _ = list_items(ops.sessions, QueueFilter(priority="P1"))
    assert [r.id for r in rows] == sorted([seeded["m-p1"], seeded["m-p1-later"]])


def test_filters_by_reason_prefix_priority_intent_and_age(ops, seeded):
    def messages(**f):
        return order(list_items(ops.sessions, QueueFilter(**f))[0])

    assert messages(reason="below_threshold") == ["m-p3-late", "m-p1-later", "m-p2"]
    assert messages(reason="llm_local") == ["m-p3-later"]
    assert messages(reason="below_%") == [], "LIKE wildcards in a filter are plain characters"
    assert messages(priority="P1") == ["m-p1", "m-p1-later"]
    assert messages(intent="card_not_working") == ["m-p2"]
    assert messages(min_age_hours=24) == ["m-p3-late", "m-p3-later"]
    assert messages(min_age_hours=26, reason="below_threshold") == ["m-p3-late"]
    assert messages(intent="no_such_intent") == []


def test_reviewers_see_the_standard_queue_seniors_also_the_senior_one(ops, seeded):
    set_item(ops, seeded["m-p1"], review_queue="senior", escalated_at=utcnow(), version=2)
    assert "m-p1" not in order(list_items(ops.sessions, STANDARD)[0])
    assert "m-p1" in order(list_items(ops.sessions, SENIOR)[0])
    assert order(list_items(ops.sessions, QueueFilter(queue="senior", visible=visible_queues("admin")))[0]) == ["m-p1"]
    with pytest.raises(QueueFilterError, match="not one you may see"):
        QueueFilter(queue="senior", visible=visible_queues("reviewer"))
    assert visible_queues("nobody") == ()


def test_decided_items_leave_the_queue(ops, seeded):
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=seeded["m-p1"], kind="approve",
                    item_version_seen=1)
    rows, total = list_items(ops.sessions, STANDARD)
    assert total == 4 and "m-p1" not in order(rows)


def test_counts_per_filter_value_are_taken_under_the_other_filters(ops, seeded):
    set_item(ops, seeded["m-p1"], review_queue="senior")
    every = counts(ops.sessions, SENIOR)
    assert every.total == 5 and every.overdue == 2
    assert every.priority == {"P1": 2, "P2": 1, "P3": 2}
    assert every.reason == {"below_threshold": 3, "llm_local_disagree": 1, "needs_human": 1}
    assert every.queue == {"standard": 4, "senior": 1}
    assert every.intent["card_arrival"] == 1 and sum(every.intent.values()) == 5
    p1 = counts(ops.sessions, QueueFilter(priority="P1", visible=SENIOR.visible))
    assert p1.total == 2
    assert p1.priority == {"P1": 2, "P2": 1, "P3": 2}, "a filter's own counts ignore its own value"
    assert p1.reason == {"below_threshold": 1, "needs_human": 1}
    assert p1.queue == {"standard": 1, "senior": 1}
    assert counts(ops.sessions, STANDARD).queue == {"standard": 4}
    beyond_code = counts(ops.sessions, QueueFilter(reason="llm_local_disagree: local", visible=SENIOR.visible))
    assert (beyond_code.total, beyond_code.priority, beyond_code.intent) == (1, {"P3": 1}, {"exchange_rate": 1})
    assert beyond_code.reason == every.reason, "the reason counts ignore the reason filter"
    short = counts(ops.sessions, QueueFilter(reason="below", priority="P3", visible=SENIOR.visible))
    assert (short.total, short.overdue, short.priority) == (1, 1, {"P1": 1, "P2": 1, "P3": 1})
    assert counts(ops.sessions, QueueFilter(reason="below_threshold_x")).total == 0


def test_pages_cover_the_queue_once_in_order(ops, seeded):
    everything, _ = list_items(ops.sessions, STANDARD, page=1, page_size=50)
    pages = [list_items(ops.sessions, STANDARD, page=p, page_size=2) for p in (1, 2, 3, 4)]
    assert [total for _, total in pages] == [5, 5, 5, 5]
    assert [r.id for rows, _ in pages for r in rows] == [r.id for r in everything]
    assert pages[3][0] == []
    for page, size in ((0, 10), (1, 0), (1, 201)):
        with pytest.raises(QueueFilterError):
            list_items(ops.sessions, STANDARD, page=page, page_size=size)


def test_next_item_follows_the_queue_order_and_wraps_round(ops, seeded):
    rows, _ = list_items(ops.sessions, STANDARD)
    ids = [r.id for r in rows]
    assert next_item_id(ops.sessions, STANDARD) == ids[0]
    assert [next_item_id(ops.sessions, STANDARD, after=i) for i in ids] == ids[1:] + ids[:1]
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=ids[1], kind="approve",
                    item_version_seen=1)
    assert next_item_id(ops.sessions, STANDARD, after=ids[1]) == ids[2], "after a decision: the one that followed"
    assert next_item_id(ops.sessions, STANDARD, after=ids[0]) == ids[2], "decided items are not offered"
    only = QueueFilter(intent="card_not_working")
    assert next_item_id(ops.sessions, only, after=seeded["m-p2"]) is None


@pytest.mark.parametrize("field,value", [("priority", "P9"), ("min_age_hours", -1.0), ("min_age_hours", float("nan")),
                                         ("reason", "x" * 201)])
def test_bad_filter_values_are_refused_with_the_field_named(field, value):
    with pytest.raises(QueueFilterError, match=field.split("_")[0]):
        QueueFilter(**{field: value})


def test_filters_from_query_parameters(ops):
    f = QueueFilter.from_params({"queue": "", "reason": " below_threshold ", "priority": "P2", "min_age_hours": "1.5",
                                 "intent": ""}, role="senior")
    assert (f.queue, f.reason, f.priority, f.intent, f.min_age_hours) == (None, "below_threshold", "P2", None, 1.5)
    assert f.params() == {"reason": "below_threshold", "priority": "P2", "min_age_hours": "1.5"}
    with pytest.raises(QueueFilterError, match="min_age_hours"):
        QueueFilter.from_params({"min_age_hours": "soon"}, role="reviewer")
    with pytest.raises(QueueFilterError):
        QueueFilter.from_params({"queue": "senior"}, role="reviewer")


def test_an_item_comes_with_suggestions_case_history_audit_and_decisions(ops):
    run = ledger(ops)
    run.execute_all([decision("m-acted", "card_not_working", automated=True, text="card broken")])
    # A person edits the case after the pipeline read it: the next message conflicts, goes to review.
    follow_up = decision("m-conflict", "card_not_working", automated=True, text="still broken")
    seen = run.read_cases([follow_up])
    case = ops.cases.all()[0]
    ops.cases.edit(case.id, case.version, actor="agent.kim", notes="called the customer")
    assert run.execute(follow_up, seen).outcome == "conflict"
    item_id = item_ids(ops)["m-conflict"]
    detail = item_detail(ops.sessions, item_id)
    assert detail.item["message_id"] == "m-conflict" and detail.item["text"] == "still broken"
    assert detail.item["customer"] == "…0001" and "cust-0001" not in str(detail.item)
    assert detail.item["reason"].startswith("case_conflict: case")
    assert detail.suggestions == [("card_arrival", 0.41), ("card_delivery_estimate", 0.3), ("card_not_working", 0.1)]
    assert detail.case["id"] == case.id and detail.case["version"] == 2 and detail.case["customer"] == "…0001"
    assert [(h["version"], h["actor"]) for h in detail.case_history] == [(1, "pipeline run run-1"), (2, "agent.kim")]
    assert [e["event"] for e in detail.audit] == ["model_call", "decision", "conflict", "review"]
    assert detail.decisions == []
    record_decision(ops.sessions, reviewer="alice", role="reviewer", item_id=item_id, kind="correct",
                    intent="card_arrival", reason="asked about delivery", item_version_seen=1, case_version_seen=2)
    detail = item_detail(ops.sessions, item_id)
    assert detail.item["status"] == "decided" and detail.item["version"] == 2
    assert [(d["reviewer"], d["kind"], d["intent"], d["model_intent"]) for d in detail.decisions] == [
        ("alice", "correct", "card_arrival", "card_not_working")]
    assert detail.audit[-1]["event"] == "review_decision"
    assert item_detail(ops.sessions, 987654) is None


def test_malformed_suggestions_are_dropped_not_crashed_on(ops):
    ledger(ops).execute_all([decision("m-1")])
    item_id = item_ids(ops)["m-1"]
    set_item(ops, item_id, suggestions=[["card_arrival", 0.5], "junk", ["x"], [3, 0.2], ["card_linking", "high"]])
    assert item_detail(ops.sessions, item_id).suggestions == [("card_arrival", 0.5)]


def test_automatic_actions_show_the_model_answer_and_overrides(ops):
    ledger(ops).execute_all([
        decision("m-auto-1", "card_arrival", automated=True, text="my card has not come"),
        decision("m-auto-2", "exchange_rate", customer="cust-0042", automated=True, text="what rate today"),
        decision("m-review", "card_arrival", customer="cust-0043"),
    ])
    rows, total = automatic_actions(ops.sessions)
    assert total == 2, "only what was acted on automatically"
    assert [(r.message_id, r.model_intent, r.customer) for r in rows] == [
        ("m-auto-2", "exchange_rate", "…0042"), ("m-auto-1", "card_arrival", "…0001")]
    assert rows[0].model_confidence == 0.97 and rows[0].overridden_by is None
    with ops.sessions.read() as s:
        action_id = s.query(Action.id).filter(Action.message_id == "m-auto-1").scalar()
    detail = action_detail(ops.sessions, action_id)
    assert detail.model["intent"] == "card_arrival" and detail.model["text"] == "my card has not come"
    assert detail.case["queue"] == "cards"
    assert sorted(o["kind"] for o in detail.outbox) == ["email", "webhook"]
    email = next(o for o in detail.outbox if o["kind"] == "email")
    assert email["destination"] is None and "@" not in str(email), "the customer's address is not shown"
    record_decision(ops.sessions, reviewer="sam", role="senior", action_id=action_id, kind="override",
                    intent="card_delivery_estimate", reason="asked when, not where", compensation="followup_email")
    rows, _ = automatic_actions(ops.sessions)
    assert [(r.message_id, r.overridden_by, r.override_status) for r in rows][1] == ("m-auto-1", "sam", "pending")
    assert action_detail(ops.sessions, action_id).decisions[0]["reason"] == "asked when, not where"
    assert action_detail(ops.sessions, 424242) is None
    assert automatic_actions(ops.sessions, page=2, page_size=1)[0][0].message_id == "m-auto-1"


def test_labels_are_the_77_intents_and_out_of_scope():
    assert len(labels()) == 78 and labels()[-1] == "out_of_scope" and len(set(labels())) == 78


def test_customer_ids_are_masked_to_the_last_four():
    assert mask_customer_id("cust-123456") == "…3456"
    assert mask_customer_id("abc") == "…"
    assert mask_customer_id("") == ""
