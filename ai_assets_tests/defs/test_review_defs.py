"""Layer 5 wiring end to end: a reviewer's decision -> the decisions sensor -> a run of
review_actions_job -> applied in the operations database; an overdue item -> the escalation
sensor, ticked as the daemon does -> the senior queue and exactly one alert at a real webhook
receiver on loopback."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterRun, DagsterRunStatus, SkipReason, build_sensor_context
from sqlalchemy import select, update

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, idempotency_key, triage
from ai_assets.defs.common import REVIEW_ACTIONS_JOB
from ai_assets.defs.review.decisions import RETRY_AFTER_S, review_decisions_sensor
from ai_assets.defs.review.escalation import review_escalation_sensor
from ai_assets.ops_db import AuditContext, OpsDb, pipeline_actor
from ai_assets.ops_db.tables import OutboxMessage, ReviewDecision, ReviewItem
from ai_assets.ops_db.types import utcnow
from ai_assets.resources import NotifierResource, OpsDatabaseResource
from ai_assets.resources.monitoring import MonitoringSettings
from ai_assets.review.decisions import record_decision
from ai_assets_tests.doubles.receivers import WebhookReceiver

POLICY = load_policy()


def to_review(db: OpsDb, *specs: tuple[str, str, str]) -> dict[str, ReviewItem]:
    """(message id, intent, customer) the model was unsure about: review items, by message id."""
    decisions = []
    for message_id, intent, customer in specs:
        t = triage(intent, False, "below_threshold: 0.41 < 0.83", POLICY)
        content = content_hash(customer, "app", "where is my card [CARD]")
        decisions.append(MessageDecision(
            message_id=message_id, customer_id=customer, intent=intent, confidence=0.41, decision=t.decision,
            action=t.action, reason=t.reason, queue=t.queue, priority=t.priority, policy_version=POLICY.version,
            idempotency_key=idempotency_key(message_id, t.action, POLICY.version, content),
            text="where is my card [CARD]", content_hash=content, suggestions=((intent, 0.41),)))
    ActionLedger(db.sessions, POLICY, AuditContext(pipeline_actor("run-1"), "run-1", "2025-03-03")).execute_all(
        decisions)
    with db.sessions.read() as s:
        return {i.message_id: i for i in s.scalars(select(ReviewItem))}


def decide(db: OpsDb, item: ReviewItem, kind: str, intent: str | None = None) -> int:
    return record_decision(db.sessions, reviewer="alice", role="reviewer", item_id=item.id, kind=kind,
                           intent=intent, item_version_seen=item.version)


def decisions_tick(workspace, instance, defs, cursor: str | None = None):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                   resources={"ops_database": OpsDatabaseResource(url=workspace.ops_db_url)})
    return review_decisions_sensor.evaluate_tick(context)


@pytest.mark.slow
def test_new_decisions_start_one_run_that_applies_them(workspace, instance):
    defs = workspace.defs()
    with OpsDb.open(workspace.ops_db_url) as db:
        idle = decisions_tick(workspace, instance, defs)
        assert idle.run_requests == [] and "no pending" in idle.skip_message
        items = to_review(db, ("m-1", "card_arrival", "c-1"), ("m-2", "card_arrival", "c-2"))
        approved = decide(db, items["m-1"], "approve")
        corrected = decide(db, items["m-2"], "correct", "card_not_working")

        tick = decisions_tick(workspace, instance, defs)
        [request] = tick.run_requests
        assert request.run_key == f"review-decisions:{corrected}"
        # The same batch at the next tick: no second run.
        again = decisions_tick(workspace, instance, defs, tick.cursor)
        assert again.run_requests == [] and "requested" in again.skip_message

        run = defs.resolve_job_def(REVIEW_ACTIONS_JOB).execute_in_process(instance=instance, tags=request.tags)
        assert run.success
        [materialization] = run.asset_materializations_for_node("review_actions")
        metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        assert {k: metadata[k] for k in ("pending_in", "applied", "conflicts", "failed", "balanced")} == {
            "pending_in": 2, "applied": 2, "conflicts": 0, "failed": 0, "balanced": True}
        assert metadata["by_kind"] == {"approve": {"applied": 1}, "correct": {"applied": 1}}
        [check] = run.get_asset_check_evaluations()
        assert (check.check_name, check.passed) == ("no_failed_decisions", True)

        with db.sessions.read() as s:
            rows = {d.id: d for d in s.scalars(select(ReviewDecision))}
            assert {(rows[i].status, rows[i].applied_run_id) for i in (approved, corrected)} == {
                ("applied", run.run_id)}
            assert {i.status for i in s.scalars(select(ReviewItem))} == {"resolved"}
            assert len(list(s.scalars(select(OutboxMessage)))) == 4  # an e-mail and an event each
        assert {(c.customer_id, c.intent, c.updated_by) for c in db.cases.all()} == {
            ("c-1", "card_arrival", "alice"), ("c-2", "card_not_working", "alice")}

        done = decisions_tick(workspace, instance, defs, tick.cursor)
        assert done.run_requests == [] and "no pending" in done.skip_message


def test_a_run_in_flight_holds_new_requests_and_a_stuck_batch_is_retried(workspace, instance):
    defs = workspace.defs()
    with OpsDb.open(workspace.ops_db_url) as db:
        items = to_review(db, ("m-1", "card_arrival", "c-1"))
        decision_id = decide(db, items["m-1"], "approve")
        started = DagsterRun(job_name=REVIEW_ACTIONS_JOB, run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
        instance.add_run(started)
        held = decisions_tick(workspace, instance, defs)
        assert held.run_requests == [] and "in flight" in held.skip_message
        instance.report_run_failed(started)  # the run died without applying anything

        # The batch was requested long ago and is still pending: requested again, under a new key.
        old = datetime.now(UTC) - timedelta(seconds=RETRY_AFTER_S + 60)
        retry = decisions_tick(workspace, instance, defs, f"{decision_id}:{old.timestamp():.0f}")
        [request] = retry.run_requests
        assert request.run_key.startswith(f"review-decisions:{decision_id}:retry:")


@pytest.fixture
def hooks():
    with WebhookReceiver() as receiver:
        yield receiver


def escalation_tick(workspace, instance, hooks) -> SkipReason:
    context = build_sensor_context(instance=instance, resources={
        "ops_database": OpsDatabaseResource(url=workspace.ops_db_url),
        "notifier": NotifierResource(webhook_url=hooks.url, ui_url="http://dagster.internal:3000"),
        "monitoring_settings": MonitoringSettings(review_url="https://review.example")})
    return review_escalation_sensor.evaluate_tick(context)


def make_overdue(db: OpsDb, item: ReviewItem, by: timedelta = timedelta(minutes=10)) -> None:
    """Data setup: the item arrived long enough ago that its due time passed `by` ago."""
    shift = (item.due_at - utcnow()) + by
    with db.sessions.write() as s:
        s.execute(update(ReviewItem).where(ReviewItem.id == item.id).values(
            created_at=item.created_at - shift, due_at=item.due_at - shift))


def test_an_overdue_item_reaches_the_senior_queue_and_exactly_one_alert(workspace, instance, hooks):
    with OpsDb.open(workspace.ops_db_url) as db:
        items = to_review(db, ("m-fraud", "lost_or_stolen_card", "c-1"), ("m-cards", "card_arrival", "c-2"),
                          ("m-later", "card_arrival", "c-3"))
        quiet = escalation_tick(workspace, instance, hooks)
        assert quiet.skip_message.startswith("no review item overdue") and hooks.requests == []
        make_overdue(db, items["m-fraud"])
        make_overdue(db, items["m-cards"])

        for _ in range(4):  # the daemon ticks every minute; the items stay overdue
            escalation_tick(workspace, instance, hooks)
        texts = [r.json["text"] for r in hooks.requests]
        assert len(texts) == 2
        fraud, cards = (next(t for t in texts if f"review item {items[m].id} " in t) for m in ("m-fraud", "m-cards"))
        assert "P1" in fraud and "senior" in fraud and "P3" in cards
        # The notice links to the item in the review app, at the URL people reach it by.
        assert f"https://review.example/items/{items['m-fraud'].id}" in json.dumps(hooks.requests[0].json) + \
            json.dumps(hooks.requests[1].json)
        assert all("[CARD]" not in t and "where is my" not in t for t in texts)
        with db.sessions.read() as s:
            queues = {i.message_id: (i.review_queue, i.escalated_at is not None)
                      for i in s.scalars(select(ReviewItem))}
        assert queues == {"m-fraud": ("senior", True), "m-cards": ("senior", True), "m-later": ("standard", False)}

        # Another item falls due later: one more notice, for it alone.
        make_overdue(db, items["m-later"])
        escalation_tick(workspace, instance, hooks)
        escalation_tick(workspace, instance, hooks)
        assert len(hooks.requests) == 3 and f"review item {items['m-later'].id} " in hooks.requests[-1].json["text"]
