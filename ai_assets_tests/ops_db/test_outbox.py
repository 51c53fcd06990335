"""The outbox store: due rows, leases that give a row to one deliverer, recorded attempts."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.outbox import MAX_ERROR_CHARS, OutboxStore
from ai_assets.ops_db.tables import OutboxMessage
from ai_assets_tests.actions.delivery import T0, add_rows, email_spec, webhook_spec


@pytest.fixture
def store(ops: OpsDb) -> OutboxStore:
    return OutboxStore(ops.sessions)


def _set(ops: OpsDb, outbox_id: int, **values) -> None:
    with ops.sessions.write() as s:
        row = s.get(OutboxMessage, outbox_id)
        for name, value in values.items():
            setattr(row, name, value)


def test_due_rows_are_pending_unleased_and_oldest_first(ops: OpsDb, store: OutboxStore):
    later, first, future, leased, delivered, dead = add_rows(
        ops.sessions, email_spec(1, next_attempt_at=T0 - timedelta(seconds=1)),
        email_spec(2, next_attempt_at=T0 - timedelta(hours=1)),
        email_spec(3, next_attempt_at=T0 + timedelta(seconds=1)),
        email_spec(4), email_spec(5), email_spec(6))
    expired_lease = add_rows(ops.sessions, webhook_spec(7, lease_until=T0))[0]
    other_partition = add_rows(ops.sessions, webhook_spec(8), partition="2031-01-02")[0]
    _set(ops, leased, lease_until=T0 + timedelta(seconds=1))
    _set(ops, delivered, status="delivered")
    _set(ops, dead, status="dead")

    assert [r.id for r in store.due(T0, limit=10)] == [first, later, expired_lease, other_partition]
    assert [r.id for r in store.due(T0, limit=2)] == [first, later]
    assert [r.id for r in store.due(T0, limit=10, partition="2031-01-02")] == [other_partition]
    assert [r.id for r in store.due(T0, limit=10, kinds=["webhook"])] == [expired_lease, other_partition]
    row = store.due(T0, limit=1)[0]
    assert (row.kind, row.destination, row.subject, row.attempts, row.status) == (
        "email", "customer2@example.org", "Your case #2", 0, "pending")
    assert row.payload == {"body": "Hello 2,\nwe opened a case for you."}
    with pytest.raises(ValueError, match="naive"):
        store.due(T0.replace(tzinfo=None), limit=1)


def test_claim_leases_a_row_to_one_deliverer(ops: OpsDb, store: OutboxStore):
    (row_id,) = add_rows(ops.sessions, email_spec(1))
    claimed = store.claim(row_id, T0, lease_s=60)
    assert claimed is not None and claimed.lease_until == T0 + timedelta(seconds=60)
    assert store.claim(row_id, T0 + timedelta(seconds=59), lease_s=60) is None  # held
    assert store.due(T0 + timedelta(seconds=59), limit=10) == []
    # A deliverer that died leaves a lease that runs out: the row is claimable again.
    again = store.claim(row_id, T0 + timedelta(seconds=60), lease_s=60)
    assert again is not None and again.lease_until == T0 + timedelta(seconds=120)


def test_claim_refuses_rows_not_due_or_not_pending(ops: OpsDb, store: OutboxStore):
    future, delivered = add_rows(ops.sessions, email_spec(1, next_attempt_at=T0 + timedelta(seconds=5)), email_spec(2))
    _set(ops, delivered, status="delivered")
    assert store.claim(future, T0, lease_s=60) is None
    assert store.claim(delivered, T0, lease_s=60) is None
    assert store.claim(10_000, T0, lease_s=60) is None


def test_record_success_updates_the_row_and_writes_a_delivery(ops: OpsDb, store: OutboxStore):
    (row_id,) = add_rows(ops.sessions, webhook_spec(1))
    store.claim(row_id, T0, lease_s=60)
    assert store.record_success(row_id, 1, latency_ms=12, now=T0 + timedelta(seconds=1))
    row = store.get(row_id)
    assert (row.status, row.attempts, row.lease_until, row.delivered_at) == (
        "delivered", 1, None, T0 + timedelta(seconds=1))
    assert [(d.attempt, d.outcome, d.error, d.latency_ms) for d in store.deliveries(row_id)] == [
        (1, "delivered", None, 12)]
    # The same attempt recorded again (a deliverer whose lease ran out) changes nothing.
    assert not store.record_success(row_id, 1, latency_ms=5, now=T0 + timedelta(seconds=2))
    assert not store.record_failure(row_id, 2, "late", 5, T0, T0, dead=False)
    assert len(store.deliveries(row_id)) == 1 and store.get(row_id).status == "delivered"


def test_record_failure_reschedules_or_kills(ops: OpsDb, store: OutboxStore):
    (row_id,) = add_rows(ops.sessions, email_spec(1))
    store.claim(row_id, T0, lease_s=60)
    long_error = "connection refused " + "x" * 1000
    retry_at = T0 + timedelta(seconds=30)
    assert store.record_failure(row_id, 1, long_error, 7, T0, retry_at, dead=False)
    row = store.get(row_id)
    assert (row.status, row.attempts, row.next_attempt_at, row.lease_until) == ("pending", 1, retry_at, None)
    assert len(row.last_error) == MAX_ERROR_CHARS and row.last_error.startswith("connection refused")
    assert store.due(T0 + timedelta(seconds=29), limit=10) == []
    assert store.claim(row_id, T0 + timedelta(seconds=30), lease_s=60) is not None
    assert store.record_failure(row_id, 2, "http 400: bad", 3, T0 + timedelta(seconds=31), None, dead=True)
    row = store.get(row_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 2, "http 400: bad")
    assert [(d.attempt, d.outcome) for d in store.deliveries(row_id)] == [(1, "failed"), (2, "dead")]
    assert len(store.deliveries(row_id)[0].error) == MAX_ERROR_CHARS
    assert [r.id for r in store.dead_letters()] == [row_id]
    with pytest.raises(ValueError):
        store.record_failure(row_id, 3, "x", 0, T0, None, dead=False)  # a retry needs a time


def test_counts_dead_letters_and_requeue(ops: OpsDb, store: OutboxStore):
    a, b, c = add_rows(ops.sessions, email_spec(1), email_spec(2), webhook_spec(3))
    (d,) = add_rows(ops.sessions, webhook_spec(4), partition="2031-01-02")
    _set(ops, a, status="dead", attempts=5)
    _set(ops, b, status="delivered")
    _set(ops, d, status="dead")
    assert store.counts() == {"pending": 1, "delivered": 1, "dead": 2}
    assert store.counts(partition="2031-01-02") == {"pending": 0, "delivered": 0, "dead": 1}
    assert [r.id for r in store.dead_letters(partition="2031-01-01")] == [a]

    assert not store.requeue(c)  # only a dead row can be re-queued
    assert store.requeue(a, now=T0 + timedelta(hours=1))
    row = store.get(a)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 5, T0 + timedelta(hours=1))
    assert store.counts() == {"pending": 2, "delivered": 1, "dead": 1}


def test_next_due_at_counts_leases(ops: OpsDb, store: OutboxStore):
    assert store.next_due_at() is None
    a, b = add_rows(ops.sessions, email_spec(1, next_attempt_at=T0 + timedelta(seconds=10)),
                    webhook_spec(2, next_attempt_at=T0 + timedelta(seconds=20)))
    assert store.next_due_at() == T0 + timedelta(seconds=10)
    assert store.next_due_at(kinds=["webhook"]) == T0 + timedelta(seconds=20)
    store.claim(a, T0 + timedelta(seconds=10), lease_s=60)  # held until T0+70
    assert store.next_due_at() == T0 + timedelta(seconds=20)
    store.claim(b, T0 + timedelta(seconds=20), lease_s=60)
    assert store.next_due_at() == T0 + timedelta(seconds=70)
    assert store.next_due_at(partition="elsewhere") is None


def test_concurrent_claims_give_a_row_to_exactly_one(ops: OpsDb, store: OutboxStore):
    ids = add_rows(ops.sessions, *(email_spec(n) for n in range(20)))
    n_threads = 6
    barrier = threading.Barrier(n_threads)
    won: list[list[int]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            for row_id in ids:
                if store.claim(row_id, T0, lease_s=60) is not None:
                    won[i].append(row_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(row_id for w in won for row_id in w) == ids  # every row once, no row twice



def test_a_stale_attempt_is_refused_while_the_row_is_still_pending(ops: OpsDb, store: OutboxStore):
    """Deliverer A's lease ran out; B took the row over and recorded attempt 1 as a failure.
    A's late result for attempt 1 must not overwrite B's (nor collide with its Delivery row)."""
    (row_id,) = add_rows(ops.sessions, email_spec(1))
    store.claim(row_id, T0, lease_s=60)
    store.claim(row_id, T0 + timedelta(seconds=61), lease_s=60)
    assert store.record_failure(row_id, 1, "B: timed out", 1, T0 + timedelta(seconds=62),
                                T0 + timedelta(seconds=90), dead=False)
    assert not store.record_success(row_id, 1, latency_ms=70_000, now=T0 + timedelta(seconds=70))
    row = store.get(row_id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "B: timed out")
    assert [(d.attempt, d.outcome) for d in store.deliveries(row_id)] == [(1, "failed")]
    with pytest.raises(ValueError):
        store.record_success(row_id, 0, latency_ms=1, now=T0)
