"""Overdue review items: raised to the senior queue once, each by exactly one caller, with an
alert keyed so that it is one row and one notice per item — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select, update

from ai_assets.actions.ledger import ActionLedger
from ai_assets.monitoring.alerts import Severity, Source
from ai_assets.monitoring.notify import AlertDispatcher, Notifier
from ai_assets.ops_db import AuditContext, pipeline_actor
from ai_assets.ops_db.alerts import AlertStore
from ai_assets.ops_db.tables import ReviewItem
from ai_assets.ops_db.types import utcnow
from ai_assets.review.escalation import (
    ESCALATED,
    EscalatedItem,
    escalate_overdue,
    item_link,
    review_overdue_alert,
    unalerted_escalations,
)
from ai_assets_tests.ops_db import conftest as ops_db_fixtures
from ai_assets_tests.review.test_apply import POLICY, message

pg_module_database, db_url, engine, ops = (ops_db_fixtures.pg_module_database, ops_db_fixtures.db_url,
                                           ops_db_fixtures.engine, ops_db_fixtures.ops)


def review_items(ops, *specs: tuple[str, str]) -> dict[str, ReviewItem]:
    """(message id, intent) sent to review by the pipeline, with the policy's due times."""
    ActionLedger(ops.sessions, POLICY, AuditContext(pipeline_actor("run-1"), "run-1", "2026-11-20")).execute_all(
        [message(m, intent, customer=f"c-{i}", automated=False, review_reason="below_threshold: 0.41 < 0.83")
         for i, (m, intent) in enumerate(specs)])
    return items(ops)


def items(ops) -> dict[str, ReviewItem]:
    with ops.sessions.read() as s:
        return {i.message_id: i for i in s.scalars(select(ReviewItem))}


def overdue(ops, message_id: str, by: timedelta = timedelta(minutes=5), **values) -> None:
    """Data setup: the item arrived long enough ago that its due time passed `by` ago (its due
    interval kept), or `values` set (e.g. due_at=None)."""
    with ops.sessions.write() as s:
        item = s.scalars(select(ReviewItem).where(ReviewItem.message_id == message_id)).one()
        if not values:
            shift = (item.due_at - utcnow()) + by
            values = {"created_at": item.created_at - shift, "due_at": item.due_at - shift}
        s.execute(update(ReviewItem).where(ReviewItem.id == item.id).values(**values))


def test_overdue_open_items_of_the_standard_queue_move_once(ops):
    before = review_items(ops, ("m-late", "card_arrival"), ("m-p1", "lost_or_stolen_card"),
                          ("m-fresh", "card_arrival"), ("m-decided", "card_arrival"), ("m-legacy", "card_arrival"))
    assert before["m-p1"].due_at - before["m-p1"].created_at == POLICY.review_due_after("P1")
    overdue(ops, "m-late")
    overdue(ops, "m-p1")
    overdue(ops, "m-decided")
    overdue(ops, "m-legacy", due_at=None, created_at=utcnow() - timedelta(hours=30))  # no due time: its arrival
    with ops.sessions.write() as s:
        s.execute(update(ReviewItem).where(ReviewItem.message_id == "m-decided").values(status="decided"))
    now = utcnow()

    moved = escalate_overdue(ops, now)
    assert {m.message_id for m in moved} == {"m-late", "m-p1", "m-legacy"}
    assert moved[0].message_id == "m-legacy"  # most overdue first
    after = items(ops)
    for message_id in ("m-late", "m-p1", "m-legacy"):
        item = after[message_id]
        assert (item.review_queue, item.escalated_at, item.version, item.status) == (
            "senior", now, before[message_id].version + 1, "open")
    for message_id in ("m-fresh", "m-decided"):
        assert (after[message_id].review_queue, after[message_id].escalated_at) == ("standard", None)
    rows = ops.audit.entries(event=ESCALATED)
    assert sorted(r.message_id for r in rows) == ["m-late", "m-legacy", "m-p1"]
    p1 = next(r for r in rows if r.message_id == "m-p1")
    assert (p1.actor, p1.detail["priority"], p1.detail["reason"]) == ("review escalation", "P1", "below_threshold")
    assert p1.detail["overdue_s"] >= 300

    assert escalate_overdue(ops, now + timedelta(minutes=1)) == []  # already in the senior queue
    assert len(ops.audit.entries(event=ESCALATED)) == 3


def test_concurrent_ticks_escalate_each_item_once(ops):
    review_items(ops, *((f"m-{i}", "card_arrival") for i in range(12)))
    for i in range(12):
        overdue(ops, f"m-{i}")
    now = utcnow()
    results: list[list[EscalatedItem]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def tick() -> None:
        try:
            start.wait()
            results.append(escalate_overdue(ops, now))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [item.id for result in results for item in result]
    assert len(ids) == len(set(ids)) == 12
    assert len(ops.audit.entries(event=ESCALATED)) == 12
    assert {i.version for i in items(ops).values()} == {2}


def test_the_alert_names_priority_reason_and_age_and_no_text_or_person(ops):
    review_items(ops, ("m-1", "lost_or_stolen_card"), ("m-2", "card_arrival"))
    with ops.sessions.write() as s:  # a conflict reason names the person who edited the case
        s.execute(update(ReviewItem).where(ReviewItem.message_id == "m-2").values(
            reason="case_conflict: case 5 changed by bob after the pipeline read v1; now v2"))
    overdue(ops, "m-1", timedelta(hours=2))
    overdue(ops, "m-2", timedelta(hours=2))
    now = utcnow()
    moved = {m.message_id: m for m in escalate_overdue(ops, now)}

    p1 = review_overdue_alert(moved["m-1"], now)
    assert p1.key == (Source.REVIEW_OVERDUE.value, f"review_item:{moved['m-1'].id}", str(moved["m-1"].id))
    assert p1.severity is Severity.ERROR and p1.figure is None and p1.partition is None
    assert "P1" in p1.summary and "below_threshold" in p1.summary and "3.0 h" in p1.summary
    assert "due after 1.0 h" in p1.summary and f"/items/{moved['m-1'].id}" in p1.summary
    assert p1.link is None  # no review app URL: no link into the Dagster UI where the page is not
    p3 = review_overdue_alert(moved["m-2"], now, review_url="https://review.bank.example/")
    assert p3.severity is Severity.WARNING and "case_conflict" in p3.summary
    assert "bob" not in p3.summary and "where is my" not in p3.summary and "[CARD]" not in p3.summary
    assert p3.link == f"https://review.bank.example/items/{moved['m-2'].id}"
    assert item_link(7) is None and item_link(7, "http://127.0.0.1:8000") == "http://127.0.0.1:8000/items/7"


def test_an_escalation_whose_alert_was_never_raised_is_found_until_it_is(ops):
    review_items(ops, ("m-1", "card_arrival"), ("m-2", "card_arrival"))
    overdue(ops, "m-1")
    overdue(ops, "m-2")
    now = utcnow()
    moved = escalate_overdue(ops, now)  # and the tick died before raising the alerts
    assert {i.id for i in unalerted_escalations(ops, now)} == {m.id for m in moved}
    dispatcher = AlertDispatcher(AlertStore(ops.sessions), Notifier())
    first = dispatcher.raise_(review_overdue_alert(moved[0], now), now)
    assert first.notified and first.sent  # no channel configured: the log line is the delivery
    assert [i.id for i in unalerted_escalations(ops, now)] == [moved[1].id]
    assert not dispatcher.raise_(review_overdue_alert(moved[0], now), now).notified  # one notice per item
    with ops.sessions.write() as s:  # decided meanwhile: no alert owed any more
        s.execute(update(ReviewItem).where(ReviewItem.id == moved[1].id).values(status="decided"))
    assert unalerted_escalations(ops, now) == []
