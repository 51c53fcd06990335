"""Deliver due outbox rows: claim one, send it, record the attempt; repeat.

At-least-once with idempotency keys: a row is sent again only if its result was not
recorded (a crash, a lease that ran out), and then under the same key, which the
receiver uses to drop the duplicate. Any number of deliverers (threads, processes,
Dagster runs) may run at once: `OutboxStore.claim` gives each row to one of them.

Retryable failures are rescheduled with capped exponential backoff and full jitter
(`backoff_delay`); a row is dead after `max_attempts` attempts or at its first
permanent failure, and stays dead until an operator re-queues it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from ai_assets.actions.delivery.transports import DeliveryFailed, Transport
from ai_assets.ops_db.audit import AuditContext
from ai_assets.ops_db.outbox import OutboxRow, OutboxStore, truncate_error
from ai_assets.ops_db.types import utcnow
from ai_assets.serving.resilience.retry_policy import full_jitter

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
EventCallback = Callable[[str, OutboxRow, dict[str, Any]], None]
"""`on_event(kind, row, detail)`: kind is "delivered", "failed" (will retry), "dead" or
"lost_lease"; row is the claimed snapshot; detail holds attempt, latency_ms and, on
failure, error, retryable and next_attempt_at (ISO), all free of secrets and message text."""


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random,
                  retry_after_s: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): a uniform draw in
    [0, min(max_s, base_s * 2**(attempt-1))] (full jitter: many rows failing together do
    not retry together). A receiver's Retry-After is a floor, itself capped at max_s."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    delay = full_jitter(attempt, base_s, max_s, rng)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


@dataclass(frozen=True)
class DeliveryReport:
    """What passes did. attempted == delivered + failed + dead (attempts recorded);
    `lost_lease` counts sends whose result another deliverer had already recorded (not
    in attempted); `skipped_claimed` rows another deliverer held."""

    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    skipped_claimed: int = 0
    lost_lease: int = 0
    dead_keys: tuple[str, ...] = ()

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def deliver_due(store: OutboxStore, transports: Mapping[str, Transport], *, max_attempts: int = 5,
                base_backoff_s: float = 1.0, max_backoff_s: float = 300.0, lease_s: float = 60.0,
                partition: str | None = None, limit: int = 1000, clock: Clock | None = None,
                rng: random.Random | None = None, on_event: EventCallback | None = None,
                stop_at: datetime | None = None, audit: AuditContext | None = None) -> DeliveryReport:
    """One pass over the rows due now whose kind has a transport (others are left pending),
    claiming no new row after `stop_at`. With `audit`, every attempt gets its audit row, in
    the transaction that records it.
    An exception from `on_event` stops the pass; the attempt it reports is already recorded
    and no other row is held. A database error while recording (the audit insert included)
    also stops it: that send is not recorded and goes out again once its lease runs out."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    clock = clock or utcnow
    rng = rng or random.Random()
    counts = dict(attempted=0, delivered=0, failed=0, dead=0, skipped_claimed=0, lost_lease=0)
    dead_keys: list[str] = []
    for due in store.due(clock(), limit, partition, kinds=list(transports)):
        if stop_at is not None and clock() >= stop_at:
            break
        row = store.claim(due.id, clock(), lease_s)
        if row is None:
            counts["skipped_claimed"] += 1
            continue
        attempt = row.attempts + 1
        failure: DeliveryFailed | None = None
        started = time.perf_counter()
        try:
            transports[row.kind].send(row)
        except DeliveryFailed as exc:
            failure = exc
        except Exception as exc:  # a transport bug must not stop the other rows; it retries, then dies
            failure = DeliveryFailed(f"unexpected {type(exc).__name__}: {exc}", retryable=True)
        latency_ms = int((time.perf_counter() - started) * 1000)
        now = clock()
        detail: dict[str, Any] = {"attempt": attempt, "latency_ms": latency_ms}
        if failure is None:
            outcome = "delivered"
            recorded = store.record_success(row.id, attempt, latency_ms, now, audit=audit, detail=detail)
        else:
            dead = not failure.retryable or attempt >= max_attempts
            outcome = "dead" if dead else "failed"
            next_at = None if dead else now + timedelta(
                seconds=backoff_delay(attempt, base_backoff_s, max_backoff_s, rng, failure.retry_after_s))
            detail.update(error=truncate_error(failure.reason), retryable=failure.retryable,
                          next_attempt_at=next_at.isoformat() if next_at else None)
            recorded = store.record_failure(row.id, attempt, failure.reason, latency_ms, now, next_at, dead,
                                            audit=audit, detail=detail)
        if not recorded:
            outcome = "lost_lease"
            counts["lost_lease"] += 1
            if audit is not None:
                store.record_lost_lease(row, audit, detail)
            log.warning("outbox %s: attempt %d finished after another deliverer recorded it (lease ran out)",
                        row.idempotency_key[:12], attempt)
        else:
            counts["attempted"] += 1
            counts[outcome] += 1
            if outcome == "dead":
                dead_keys.append(row.idempotency_key)
                log.error("outbox %s (%s): dead after attempt %d: %s", row.idempotency_key[:12], row.kind,
                          attempt, detail["error"])
            elif outcome == "failed":
                log.warning("outbox %s (%s): attempt %d failed, retry at %s: %s", row.idempotency_key[:12],
                            row.kind, attempt, detail["next_attempt_at"], detail["error"])
        if on_event is not None:
            on_event(outcome, row, detail)
    return DeliveryReport(**counts, dead_keys=tuple(dead_keys))


def deliver_until_settled(store: OutboxStore, transports: Mapping[str, Transport], *, deadline_s: float,
                          max_attempts: int = 5, base_backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                          lease_s: float = 60.0, partition: str | None = None, limit: int = 1000,
                          clock: Clock | None = None, rng: random.Random | None = None,
                          on_event: EventCallback | None = None, audit: AuditContext | None = None,
                          sleep: Callable[[float], None] = time.sleep) -> DeliveryReport:
    """Passes of `deliver_due`, sleeping until the next row is due, until no row of a kind
    we can deliver is pending, or the next one is not due before `deadline_s` (measured on
    `clock`) has passed. Rows still pending are left for the next run. The summed report."""
    clock = clock or utcnow
    rng = rng or random.Random()
    kinds = list(transports)
    give_up_at = clock() + timedelta(seconds=deadline_s)
    total = DeliveryReport()
    while True:
        total += deliver_due(store, transports, max_attempts=max_attempts, base_backoff_s=base_backoff_s,
                             max_backoff_s=max_backoff_s, lease_s=lease_s, partition=partition, limit=limit,
                             clock=clock, rng=rng, on_event=on_event, stop_at=give_up_at, audit=audit)
        next_at = store.next_due_at(partition, kinds)
        now = clock()
        if next_at is None or next_at >= give_up_at or now >= give_up_at:
            return total
        wait = (next_at - now).total_seconds()
        if wait > 0:
            sleep(wait)


__all__ = ["DeliveryReport", "EventCallback", "backoff_delay", "deliver_due", "deliver_until_settled"]
