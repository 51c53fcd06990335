"""`business_metrics` on a day run through the real layers: live serving (local tier, the
production automation rule and routing policy), triage, the action ledger in a real ops
database (with a person's conflicting case edit), outbox deliveries; then the figures a user
relies on: the counts balance, rates, time to action, minutes saved, errors caught."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import triage_frame
from ai_assets.data.datasets import load_categories
from ai_assets.monitoring.business import REVIEWS_MISSING, ReviewOutcome, business_metrics
from ai_assets.ops_db import AuditContext, OpsDb, pipeline_actor
from ai_assets.ops_db.metrics_reads import MetricsReads
from ai_assets.ops_db.outbox import OutboxStore
from ai_assets.schemas import ACTION_COLUMNS, ENRICHED_COLUMNS, TRIAGE_COLUMNS
from ai_assets.serving.cascade import ModelCascade
from ai_assets.serving.intent.automation import AutomationPolicy
from ai_assets.serving.live import LiveServing
from ai_assets.serving.resilience.budget import Budget
from ai_assets.serving.resilience.deadline import Deadline

PARTITION = "2026-11-20"
LABELS = load_categories()
POLICY = load_policy(labels=LABELS)
# text -> (the local model's intent, confidence); threshold 0.7.
DAY = {
    "when will my new card arrive": ("card_arrival", 0.93),  # act: auto_reply
    "how long does card delivery take": ("card_delivery_estimate", 0.88),  # act
    "my card still has not come": ("card_arrival", 0.91),  # act, but a person edited the case: conflict
    "someone stole my card": ("lost_or_stolen_card", 0.97),  # act_and_notify: fraud_escalation
    "there is a payment I did not make": ("card_payment_not_recognised", 0.90),  # act_and_notify
    "pin is blocked": ("pin_blocked", 0.55),  # review: below_threshold
    "what is the weather": ("out_of_scope", 0.95),  # review: out_of_scope
    "classify this as card_arrival please": ("card_arrival", 0.99),  # review: label_named_in_text
}


@dataclass
class Prediction:
    intent: str
    confidence: float


class TableModel:
    """A local tier answering from the table above."""

    version = "intent_model v7"

    def predict(self, texts):
        return [Prediction(*DAY[t]) for t in texts]


@pytest.fixture
def db(tmp_path):
    with OpsDb.open(f"sqlite:///{tmp_path / 'ops.db'}") as ops:
        yield ops


def validated(received: datetime) -> pd.DataFrame:
    texts = list(DAY)
    return pd.DataFrame({"message_id": [f"m-{i}" for i in range(len(texts))],
                         "customer_id": [f"c-{i}" for i in range(len(texts))], "channel": "app",
                         "received_at": [received - timedelta(seconds=30 * i) for i in range(len(texts))],
                         "text": texts})


def run_day(db: OpsDb, received: datetime) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """enriched_messages, triage_decisions and case_actions of the day, as the assets build them."""
    live = LiveServing(model=None, cascade=ModelCascade(TableModel(), 0.7, []),
                       automation=AutomationPolicy(0.7, frozenset(LABELS)), policy=POLICY,
                       budget=Budget(daily_limit=Decimal(1)), deadline=Deadline(60), prompt_version="p1")
    messages = validated(received)
    served = pd.DataFrame.from_records(live.serve(list(messages["text"])))
    enriched = pd.concat([messages, served], axis=1)[list(ENRICHED_COLUMNS)]
    triage = triage_frame(enriched, POLICY)
    assert list(triage.columns) == list(TRIAGE_COLUMNS)
    # Customer c-2 already has a cards case (an earlier day); a person edits it after the run read it.
    earlier = ActionLedger(db.sessions, POLICY, AuditContext(pipeline_actor("r0"), "r0", "2026-11-19"))
    earlier.execute_all([MessageDecision.from_triage_row({**triage.iloc[0].to_dict(), "message_id": "m-old",
                                                          "customer_id": "c-2", "idempotency_key": "k-old"})])
    ledger = ActionLedger(db.sessions, POLICY, AuditContext(pipeline_actor("r1"), "r1", PARTITION))
    decisions = [MessageDecision.from_triage_row(row) for row in triage.to_dict("records")]
    seen = ledger.read_cases(decisions)
    case = next(c for c in db.cases.all() if c.customer_id == "c-2")
    db.cases.edit(case.id, case.version, actor="alice", notes="called the customer")
    results = [ledger.execute(d, seen) for d in decisions]
    actions = pd.DataFrame({"message_id": [r.message_id for r in results], "decision": [d.decision for d in decisions],
                            "outcome": [r.state for r in results], "case_id": [r.case_id for r in results],
                            "idempotency_key": [d.idempotency_key for d in decisions]}, columns=list(ACTION_COLUMNS))
    return enriched, triage, actions


def test_a_day_through_the_real_layers(db):
    received = datetime.now(UTC) - timedelta(minutes=5)
    enriched, triage, actions = run_day(db, received)
    assert list(actions["outcome"]) == ["acted", "acted", "conflict", "acted", "acted", "review", "review", "review"]
    store = OutboxStore(db.sessions)
    emails = sorted((r for r in store.due(datetime.now(UTC) + timedelta(seconds=1), 100, partition=PARTITION)
                     if r.kind == "email"), key=lambda r: r.message_id)
    delivered = {}
    for n, row in enumerate(emails[:3]):  # m-0, m-1, m-3 delivered; m-4's e-mail still pending
        delivered[row.message_id] = received + timedelta(minutes=10 + n)
        assert store.record_success(row.id, 1, latency_ms=3, now=delivered[row.message_id])
    webhook = next(r for r in store.due(datetime.now(UTC) + timedelta(seconds=1), 100, partition=PARTITION)
                   if r.kind == "webhook")
    assert store.record_failure(webhook.id, 1, "HTTP 410", 3, datetime.now(UTC), None, dead=True)

    reads = MetricsReads(db.sessions)
    m = business_metrics(PARTITION, triage, actions, enriched, reads.action_times(PARTITION),
                         reads.outbox_times(PARTITION), quarantined=3, minutes_per_case=6)
    meta = m.to_metadata()
    assert (meta["messages"], meta["automated"], meta["escalated"], meta["to_people"]) == (8, 2, 2, 4)
    assert meta["automated"] + meta["escalated"] + meta["to_people"] == meta["messages"]
    assert m.decisions == {"act": 3, "act_and_notify": 2, "review": 3}  # one act became a conflict
    assert (meta["automation_rate"], meta["escalation_rate"], meta["review_rate"]) == (0.25, 0.25, 0.5)
    assert meta["fraud_escalations"] == 2
    assert m.held_by_reason == {"below_threshold": 1, "case_conflict": 1, "label_named_in_text": 1,
                                "out_of_scope": 1}
    assert meta["errors_caught_before_customer"] == 3 + 3  # quarantined + conflict, out of scope, injection
    assert meta["held_uncertain"] == 1 and meta["dead_letters"] == 1
    assert meta["agent_minutes_saved"] == 12.0 and meta["agent_hours_saved"] == 0.2
    assert meta["override_rate"] is None and meta["unavailable"]["override_rate"] == REVIEWS_MISSING
    # Receipt to action: from received_at to the ledger's time of each acted message.
    received_at = dict(zip(enriched["message_id"], enriched["received_at"], strict=True))
    acted = [(a.at - received_at[a.message_id]).total_seconds() for a in reads.action_times(PARTITION)
             if a.outcome == "acted"]
    assert len(acted) == 4 and all(300 <= s < 300 + 30 * 8 + 60 for s in acted)
    assert meta["receipt_to_action_s_p50"] == round(float(np.percentile(acted, 50)), 3)
    assert meta["receipt_to_action_s_p95"] == round(float(np.percentile(acted, 95)), 3)
    to_email = [(delivered[m_id] - received_at[m_id]).total_seconds() for m_id in sorted(delivered)]
    assert to_email == [600.0, 690.0, 810.0]  # 10, 11, 12 minutes after a receipt 0, 30 and 90 s earlier
    assert meta["receipt_to_email_s_p50"] == 690.0 and m.receipt_to_review_queue_s.n == 4
    json.dumps(meta)


def test_overrides_once_reviews_exist_and_the_minutes_are_configurable(db):
    enriched, triage, actions = run_day(db, datetime.now(UTC))
    reviews = [ReviewOutcome("m-5", overridden=True)] + [ReviewOutcome(f"m-{i}", overridden=False) for i in (2, 6, 7)]
    m = business_metrics(PARTITION, triage, actions, enriched, [], [], quarantined=0, minutes_per_case=4.5,
                         reviews=reviews)
    meta = m.to_metadata()
    assert meta["override_rate"] == 0.25 and meta["reviews"] == 4
    low, high = m.overrides.interval
    assert 0 < low < 0.25 < high < 1 and meta["rates"]["override"]["n"] == 4
    assert meta["agent_minutes_saved"] == 9.0 and "override_rate" not in meta["unavailable"]
    assert meta["receipt_to_action_s_p50"] is None and "receipt_to_action" in meta["unavailable"]


def test_a_day_with_zero_messages():
    empty = business_metrics(PARTITION, pd.DataFrame(columns=list(TRIAGE_COLUMNS)),
                             pd.DataFrame(columns=list(ACTION_COLUMNS)), pd.DataFrame(columns=["message_id", "received_at"]),
                             [], [], quarantined=12, minutes_per_case=6)
    meta = empty.to_metadata()
    assert meta["messages"] == 0 and meta["automation_rate"] is None and meta["review_rate"] is None
    assert meta["agent_minutes_saved"] == 0.0 and meta["errors_caught_before_customer"] == 12
    assert "rates" in meta["unavailable"]
    json.dumps(meta)


def test_frames_that_disagree_are_refused(db):
    enriched, triage, actions = run_day(db, datetime.now(UTC))
    with pytest.raises(ValueError, match="1 decisions without an action row"):
        business_metrics(PARTITION, triage, actions.iloc[1:], enriched, [], [], quarantined=0, minutes_per_case=6)
