"""The metrics' reads: usage rows of a partition, spend per (tier, model) and per day, action and
outbox times — on SQLite and PostgreSQL, from rows written by the real stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from ai_assets.actions.ledger import ActionLedger, MessageDecision
from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import content_hash, idempotency_key, triage
from ai_assets.ops_db import AuditContext, OpsDb, UsageEntry, pipeline_actor
from ai_assets.ops_db.metrics_reads import MetricsReads, SpendLine, day_window
from ai_assets.ops_db.outbox import OutboxStore

DAY = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, tzinfo=UTC)
POLICY = load_policy()
SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"


def entry(model: str, cost: str, at: datetime, **kw) -> UsageEntry:
    return UsageEntry(tier=model, model=model, cost_usd=Decimal(cost), at=at, **kw)


def test_usage_calls_of_a_partition_in_write_order(ops: OpsDb):
    ops.usage.record_many([
        entry(SONNET, "0.001000001", T0 + timedelta(hours=1), latency_ms=812, input_tokens=900, output_tokens=40,
              run_id="r1", partition="2026-11-20"),
        entry(SONNET, "0", T0 + timedelta(hours=2), cache_hit=True, run_id="r1", partition="2026-11-20"),
        entry(HAIKU, "0", T0 + timedelta(hours=3), outcome="circuit_open", run_id="r1", partition="2026-11-20"),
        entry(HAIKU, "0.5", T0 + timedelta(days=3), run_id="r2", partition="2026-11-19"),  # a backfill
    ])
    calls = MetricsReads(ops.sessions).usage_calls("2026-11-20")
    assert [(c.model, c.outcome, c.cache_hit, c.latency_ms) for c in calls] == [
        (SONNET, "ok", False, 812), (SONNET, "ok", True, 0), (HAIKU, "circuit_open", False, 0)]
    assert calls[0].cost_usd == Decimal("0.001000001") and calls[0].input_tokens == 900
    assert calls[0].at == T0 + timedelta(hours=1) and calls[0].run_id == "r1"
    assert [c.id for c in calls] == sorted(c.id for c in calls)
    assert MetricsReads(ops.sessions).usage_calls("2026-11-21") == []


def test_spend_lines_per_tier_and_model_exact_and_windowed(ops: OpsDb):
    ops.usage.record_many([
        entry(SONNET, "0.000123457", T0, partition="2026-11-20", run_id="r1"),
        entry(SONNET, "0.000123457", T0 + timedelta(hours=23, minutes=59), partition="2026-11-20", run_id="r1"),
        entry(SONNET, "0", T0 + timedelta(hours=5), cache_hit=True, partition="2026-11-20", run_id="r1"),
        entry(SONNET, "0", T0 + timedelta(hours=6), outcome="overloaded", partition="2026-11-20", run_id="r1"),
        entry(HAIKU, "0.25", T0 + timedelta(hours=7), partition="2026-11-20", run_id=None),
        entry(HAIKU, "1.00", T0 + timedelta(hours=8), run_id="evaluate-abc"),  # an evaluation
        entry(HAIKU, "9.99", T0 + timedelta(days=1), partition="2026-11-20", run_id="r9"),  # next day's window
    ])
    reads = MetricsReads(ops.sessions)
    live = reads.spend_lines(*day_window(DAY), exclude_run_prefix="evaluate-")
    assert live == [SpendLine(HAIKU, HAIKU, 1, 0, 0, 0, 0, Decimal("0.25")),
                    SpendLine(SONNET, SONNET, 4, 1, 1, 0, 0, Decimal("0.000246914"))]
    assert reads.spend_lines(*day_window(DAY), only_run_prefix="evaluate-") == [
        SpendLine(HAIKU, HAIKU, 1, 0, 0, 0, 0, Decimal("1.00"))]
    # By partition, whatever the wall-clock day: the backfill-style row of the next day counts.
    by_partition = reads.spend_lines(partition="2026-11-20")
    assert sum(line.cost_usd for line in by_partition) == Decimal("10.240246914")
    assert reads.spend_lines(*day_window(DAY + timedelta(days=5))) == []


def test_daily_spend_covers_every_day_of_the_range(ops: OpsDb):
    ops.usage.record_many([entry(HAIKU, "0.10", T0 - timedelta(microseconds=1)),  # the 19th
                           entry(HAIKU, "0.20", T0), entry(HAIKU, "0.30", T0 + timedelta(days=2))])
    spend = MetricsReads(ops.sessions).daily_spend(DAY - timedelta(days=1), DAY + timedelta(days=2))
    assert list(spend) == [DAY + timedelta(days=i) for i in range(-1, 3)]
    totals = {d: sum((line.cost_usd for line in lines), Decimal(0)) for d, lines in spend.items()}
    assert list(totals.values()) == [Decimal("0.10"), Decimal("0.20"), Decimal(0), Decimal("0.30")]
    assert spend[DAY + timedelta(days=1)] == []


def decision(message_id: str, intent: str, customer: str, automated: bool = True) -> MessageDecision:
    t = triage(intent, automated, None if automated else "below_threshold: 0.400 < 0.700", POLICY)
    content = content_hash(customer, "app", f"text of {message_id}")
    return MessageDecision(message_id=message_id, customer_id=customer, intent=intent, confidence=0.9,
                           decision=t.decision, action=t.action, reason=t.reason, queue=t.queue,
                           priority=t.priority, policy_version=POLICY.version,
                           idempotency_key=idempotency_key(message_id, t.action, POLICY.version, content),
                           text=f"text of {message_id}", content_hash=content)


def test_action_and_outbox_times_of_a_partition(ops: OpsDb):
    before = datetime.now(UTC)
    ActionLedger(ops.sessions, POLICY, AuditContext(pipeline_actor("r1"), "r1", "2026-11-20")).execute_all([
        decision("m-1", "card_arrival", "c-1"), decision("m-2", "lost_or_stolen_card", "c-2"),
        decision("m-3", "card_arrival", "c-3", automated=False)])
    ActionLedger(ops.sessions, POLICY, AuditContext(pipeline_actor("r2"), "r2", "2026-11-21")).execute_all([
        decision("m-4", "card_arrival", "c-4")])
    reads = MetricsReads(ops.sessions)
    times = reads.action_times("2026-11-20")
    assert [(a.message_id, a.decision, a.action, a.outcome) for a in times] == [
        ("m-1", "act", "auto_reply", "acted"), ("m-2", "act_and_notify", "fraud_escalation", "acted"),
        ("m-3", "review", "review", "review")]
    assert all(before <= a.at <= datetime.now(UTC) for a in times)

    store = OutboxStore(ops.sessions)
    rows = {(r.message_id, r.kind): r for r in store.due(datetime.now(UTC) + timedelta(seconds=1), 100,
                                                         partition="2026-11-20")}
    delivered_at = datetime(2030, 1, 1, tzinfo=UTC)
    assert store.record_success(rows["m-1", "email"].id, 1, latency_ms=5, now=delivered_at)
    assert store.record_failure(rows["m-2", "webhook"].id, 1, "HTTP 500", 5, delivered_at, None, dead=True)
    outbox = reads.outbox_times("2026-11-20")
    assert [(o.message_id, o.kind, o.status, o.attempts) for o in outbox] == [
        ("m-1", "email", "delivered", 1), ("m-1", "webhook", "pending", 0),
        ("m-2", "email", "pending", 0), ("m-2", "webhook", "dead", 1)]
    assert outbox[0].delivered_at == delivered_at and outbox[1].delivered_at is None
    assert [o.message_id for o in reads.outbox_times("2026-11-21")] == ["m-4", "m-4"]
