"""The audit log: append-only rows for every model call, decision, action, conflict and
delivery, and `story(message_id)` — one message's whole history for `ai-assets audit`.

Rows are written inside the transaction of the thing they describe, so the log never
claims an action that was rolled back. Only masked text and ids go in: no secret, no
e-mail address, no unmasked PII.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import Action, AuditEntry, Case, CaseHistory, Delivery, OutboxMessage, ReviewItem


class AuditEvent:
    MODEL_CALL = "model_call"
    DECISION = "decision"
    ACTION = "action"
    REVIEW = "review"
    CONFLICT = "conflict"
    POLICY_CHANGE = "policy_change"
    DELIVERY = "delivery"
    DEAD_LETTER = "dead_letter"
    REQUEUE = "requeue"
    # Layer 5: people deciding (ai_assets/review)
    REVIEW_DECISION = "review_decision"  # a reviewer's decision recorded by the review app
    REVIEW_APPLIED = "review_applied"    # ... carried out by review_actions_job
    REVIEW_FAILED = "review_failed"      # ... that could not be carried out as recorded
    ESCALATED = "escalated"              # an overdue item raised to the senior queue


@dataclass(frozen=True)
class AuditContext:
    """Where an audit row comes from: who acted, in which run and partition."""
    actor: str
    run_id: str | None = None
    partition: str | None = None


def add_entry(session: Session, ctx: AuditContext, event: str, *, message_id: str | None,
              policy_version: str | None = None, model_version: str | None = None,
              **detail: Any) -> None:
    session.add(AuditEntry(event=event, message_id=message_id, run_id=ctx.run_id, partition=ctx.partition,
                           policy_version=policy_version, model_version=model_version, actor=ctx.actor,
                           detail=detail))


@dataclass
class MessageStory:
    message_id: str
    audit: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.audit or self.actions or self.outbox or self.reviews)


def _plain(row: Any, columns: list[str]) -> dict[str, Any]:
    out = {}
    for name in columns:
        value = getattr(row, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


class AuditLog:
    def __init__(self, sessions: Sessions):
        self._sessions = sessions

    def record(self, ctx: AuditContext, event: str, *, message_id: str | None, **kwargs: Any) -> None:
        with self._sessions.write() as s:
            add_entry(s, ctx, event, message_id=message_id, **kwargs)

    def entries(self, message_id: str | None = None, event: str | None = None) -> list[AuditEntry]:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if message_id is not None:
            query = query.where(AuditEntry.message_id == message_id)
        if event is not None:
            query = query.where(AuditEntry.event == event)
        with self._sessions.read() as s:
            return list(s.scalars(query))

    def story(self, message_id: str) -> MessageStory:
        story = MessageStory(message_id)
        with self._sessions.read() as s:
            story.audit = [_plain(e, ["at", "event", "run_id", "partition", "policy_version", "model_version",
                                      "actor", "detail"])
                           for e in s.scalars(select(AuditEntry).where(AuditEntry.message_id == message_id)
                                              .order_by(AuditEntry.id))]
            actions = list(s.scalars(select(Action).where(Action.message_id == message_id).order_by(Action.id)))
            story.actions = [_plain(a, ["at", "action", "decision", "outcome", "policy_version", "case_id",
                                        "run_id", "partition", "idempotency_key"]) for a in actions]
            case_ids = sorted({a.case_id for a in actions if a.case_id is not None})
            for case_id in case_ids:
                case = s.get(Case, case_id)
                history = s.scalars(select(CaseHistory).where(CaseHistory.case_id == case_id)
                                    .order_by(CaseHistory.version))
                story.cases.append({**_plain(case, ["id", "customer_id", "queue", "priority", "status", "intent",
                                                    "assignee", "version", "updated_by"]),
                                    "history": [_plain(h, ["version", "actor", "message_id", "change", "at"])
                                                for h in history]})
            for row in s.scalars(select(OutboxMessage).where(OutboxMessage.message_id == message_id)
                                 .order_by(OutboxMessage.id)):
                deliveries = s.scalars(select(Delivery).where(Delivery.outbox_id == row.id)
                                       .order_by(Delivery.attempt))
                # destination of an e-mail is an address (PII): the story shows the kind only.
                story.outbox.append({**_plain(row, ["kind", "subject", "status", "attempts", "idempotency_key",
                                                    "created_at", "delivered_at", "last_error"]),
                                     "deliveries": [_plain(d, ["attempt", "outcome", "error", "latency_ms", "at"])
                                                    for d in deliveries]})
            story.reviews = [_plain(r, ["reason", "intent", "confidence", "queue", "priority", "status",
                                        "case_id", "created_at", "resolved_by"])
                             for r in s.scalars(select(ReviewItem).where(ReviewItem.message_id == message_id))]
        return story
