"""The outbox's delivery side: find due rows, lease one, record each attempt.

Rows are written by the action that causes them (same transaction); this module only
delivers. A deliverer takes a row with `claim`, a conditional UPDATE that sets a lease:
on SQLite the write transaction begins IMMEDIATE (writers serialise), on PostgreSQL the
second of two concurrent UPDATEs re-checks its WHERE after the first commits and finds the
lease taken, so exactly one of them gets the row, without SKIP LOCKED.

`record_success` / `record_failure` are conditional too: they only apply if the row still
has the attempt count the deliverer claimed it with. If a lease ran out mid-send and
another deliverer recorded that attempt first, the late result is refused (False) instead
of overwriting it; a receiver that de-duplicates by idempotency key (webhooks) drops the
second send, an SMTP server delivers it again under the same Message-ID.
Given an `AuditContext`, each recorded attempt's audit row is written in the same transaction
as its `deliveries` row, so the log and the delivery record never disagree.

    store = OutboxStore(db.sessions)
    for row in store.due(now, limit=100):
        claimed = store.claim(row.id, now, lease_s=60)
        ...send...
        store.record_success(claimed.id, claimed.attempts + 1, latency_ms=12, now=now)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from ai_assets.ops_db.audit import AuditContext, AuditEvent, add_entry
from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import Delivery, OutboxMessage, OutboxStatus
from ai_assets.ops_db.types import as_utc, utcnow

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class OutboxRow:
    """A detached snapshot of one outbox row."""

    id: int
    idempotency_key: str
    action_id: int
    message_id: str
    partition: str | None
    kind: str
    destination: str
    subject: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, m: OutboxMessage) -> OutboxRow:
        return cls(id=m.id, idempotency_key=m.idempotency_key, action_id=m.action_id, message_id=m.message_id,
                   partition=m.partition, kind=m.kind, destination=m.destination, subject=m.subject,
                   payload=dict(m.payload), status=m.status, attempts=m.attempts,
                   next_attempt_at=m.next_attempt_at, lease_until=m.lease_until, last_error=m.last_error,
                   created_at=m.created_at, delivered_at=m.delivered_at)


@dataclass(frozen=True)
class DeliveryRecord:
    outbox_id: int
    attempt: int
    outcome: str  # delivered | failed | dead
    error: str | None
    latency_ms: int
    at: datetime


def _add_delivery_audit(session: Session, audit: AuditContext, row: OutboxRow, outcome: str,
                       detail: dict[str, Any]) -> None:
    """The audit row of one delivery attempt, under the row's own partition."""
    add_entry(session, replace(audit, partition=row.partition),
              AuditEvent.DEAD_LETTER if outcome == "dead" else AuditEvent.DELIVERY,
              message_id=row.message_id, outcome=outcome, kind=row.kind, outbox_id=row.id,
              idempotency_key=row.idempotency_key, **detail)


def truncate_error(error: str | None) -> str | None:
    if error is None:
        return None
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."


def _no_live_lease(now: datetime) -> ColumnElement[bool]:
    return or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until <= now)


def _scope(partition: str | None, kinds: Collection[str] | None) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if partition is not None:
        clauses.append(OutboxMessage.partition == partition)
    if kinds is not None:
        clauses.append(OutboxMessage.kind.in_(list(kinds)))
    return clauses


class OutboxStore:
    """Delivery-side access to the `outbox` and `deliveries` tables."""

    def __init__(self, sessions: Sessions):
        self.sessions = sessions

    def get(self, outbox_id: int) -> OutboxRow | None:
        with self.sessions.read() as s:
            m = s.get(OutboxMessage, outbox_id)
            return OutboxRow.of(m) if m is not None else None

    def due(self, now: datetime, limit: int, partition: str | None = None,
            kinds: Collection[str] | None = None) -> list[OutboxRow]:
        """Pending rows whose time has come and that nobody holds, oldest first.
        `kinds` limits them to the kinds the caller can deliver."""
        now = as_utc(now, "now")
        query = (select(OutboxMessage)
                 .where(OutboxMessage.status == OutboxStatus.PENDING.value, OutboxMessage.next_attempt_at <= now,
                        _no_live_lease(now), *_scope(partition, kinds))
                 .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                 .limit(limit))
        with self.sessions.read() as s:
            return [OutboxRow.of(m) for m in s.scalars(query)]

    def next_due_at(self, partition: str | None = None, kinds: Collection[str] | None = None) -> datetime | None:
        """When the earliest pending row can next be claimed (its lease counted), or None if none is pending."""
        lease = OutboxMessage.lease_until
        earliest = case((and_(lease.is_not(None), lease > OutboxMessage.next_attempt_at), lease),
                        else_=OutboxMessage.next_attempt_at)
        query = select(func.min(earliest)).where(OutboxMessage.status == OutboxStatus.PENDING.value,
                                                 *_scope(partition, kinds))
        with self.sessions.read() as s:
            return s.scalar(query)

    def claim(self, outbox_id: int, now: datetime, lease_s: float) -> OutboxRow | None:
        """Lease the row until now + lease_s, or None if it is not pending, not due (another
        deliverer rescheduled it) or someone else holds a live lease."""
        now = as_utc(now, "now")
        with self.sessions.write() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outbox_id, OutboxMessage.status == OutboxStatus.PENDING.value,
                       OutboxMessage.next_attempt_at <= now, _no_live_lease(now))
                .values(lease_until=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return None
            return OutboxRow.of(s.execute(select(OutboxMessage).where(OutboxMessage.id == outbox_id)).scalar_one())

    def record_success(self, outbox_id: int, attempt: int, latency_ms: int, now: datetime, *,
                       audit: AuditContext | None = None, detail: dict[str, Any] | None = None) -> bool:
        """Mark attempt `attempt` delivered; False (nothing written) if that attempt was already recorded.
        With `audit`, the audit row (carrying `detail`) is written in the same transaction."""
        now = as_utc(now, "now")
        return self._record(outbox_id, attempt, "delivered", None, latency_ms, now,
                            dict(status=OutboxStatus.DELIVERED.value, delivered_at=now), audit, detail)

    def record_failure(self, outbox_id: int, attempt: int, error: str, latency_ms: int, now: datetime,
                       next_attempt_at: datetime | None, dead: bool, *, audit: AuditContext | None = None,
                       detail: dict[str, Any] | None = None) -> bool:
        """Record a failed attempt: the row stays pending until `next_attempt_at`, or is dead.
        False (nothing written) if that attempt was already recorded. `audit` as for `record_success`."""
        now = as_utc(now, "now")
        error = truncate_error(error) or ""
        values: dict[str, Any] = dict(last_error=error)
        if dead:
            values["status"] = OutboxStatus.DEAD.value
        else:
            if next_attempt_at is None:
                raise ValueError("a retryable failure needs next_attempt_at")
            values["next_attempt_at"] = as_utc(next_attempt_at, "next_attempt_at")
        return self._record(outbox_id, attempt, "dead" if dead else "failed", error, latency_ms, now, values,
                            audit, detail)

    def _record(self, outbox_id: int, attempt: int, outcome: str, error: str | None, latency_ms: int,
                now: datetime, values: dict[str, Any], audit: AuditContext | None,
                detail: dict[str, Any] | None) -> bool:
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        with self.sessions.write() as s:
            # `attempts == attempt - 1` is the optimistic check: the attempt is still ours to record.
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outbox_id, OutboxMessage.status == OutboxStatus.PENDING.value,
                       OutboxMessage.attempts == attempt - 1)
                .values(attempts=attempt, lease_until=None, **values)
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return False
            s.add(Delivery(outbox_id=outbox_id, attempt=attempt, outcome=outcome, error=error,
                           latency_ms=max(0, int(latency_ms)), at=now))
            if audit is not None:
                row = s.execute(select(OutboxMessage).where(OutboxMessage.id == outbox_id)).scalar_one()
                _add_delivery_audit(s, audit, OutboxRow.of(row), outcome, detail or {})
            return True

    def record_lost_lease(self, row: OutboxRow, audit: AuditContext, detail: dict[str, Any]) -> None:
        """Audit an attempt whose result came too late to be recorded (nothing else is written)."""
        with self.sessions.write() as s:
            _add_delivery_audit(s, audit, row, "lost_lease", detail)

    def requeue(self, outbox_id: int, now: datetime | None = None) -> bool:
        """Put a dead row back to pending, due at `now` (default: now; an operator's decision, after fixing the
        cause). Its attempt count is kept, so attempt numbers stay unique: with the usual
        `attempts >= max_attempts` rule it gets one more try before it is dead again.
        False if the row is not dead."""
        now = as_utc(now, "now") if now is not None else utcnow()
        with self.sessions.write() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outbox_id, OutboxMessage.status == OutboxStatus.DEAD.value)
                .values(status=OutboxStatus.PENDING.value, next_attempt_at=now, lease_until=None)
                .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def counts(self, partition: str | None = None) -> dict[str, int]:
        """Rows per status, every status present."""
        query = (select(OutboxMessage.status, func.count()).where(*_scope(partition, None))
                 .group_by(OutboxMessage.status))
        with self.sessions.read() as s:
            found = {status: n for status, n in s.execute(query)}
        return {status.value: int(found.get(status.value, 0)) for status in OutboxStatus}

    def dead_letters(self, partition: str | None = None) -> list[OutboxRow]:
        query = (select(OutboxMessage)
                 .where(OutboxMessage.status == OutboxStatus.DEAD.value, *_scope(partition, None))
                 .order_by(OutboxMessage.id))
        with self.sessions.read() as s:
            return [OutboxRow.of(m) for m in s.scalars(query)]

    def deliveries(self, outbox_id: int) -> list[DeliveryRecord]:
        """Every recorded attempt of one row, in order."""
        query = select(Delivery).where(Delivery.outbox_id == outbox_id).order_by(Delivery.attempt)
        with self.sessions.read() as s:
            return [DeliveryRecord(d.outbox_id, d.attempt, d.outcome, d.error, d.latency_ms, d.at)
                    for d in s.scalars(query)]


__all__ = ["DeliveryRecord", "MAX_ERROR_CHARS", "OutboxRow", "OutboxStore", "truncate_error"]
