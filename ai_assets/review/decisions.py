"""Recording a reviewer's decision: the web app's one write, safe when two people decide at once.

`record_decision` validates the decision, then in ONE transaction
  - for a review item: `UPDATE review_items SET status='decided', version=version+1 WHERE id=:id
    AND status='open' AND version=:seen` — only one of two concurrent reviewers matches the row;
  - inserts a `pending` `ReviewDecision` with what the person decided and a copy of what the model
    had said (intent, confidence, version, suggestions, the masked text), and the item and case
    versions the reviewer read; the partial unique indexes refuse a second live decision for the
    same item or action, which also catches a race the UPDATE cannot (overrides have no item);
  - writes a `review_decision` audit row.
The loser of a race gets `AlreadyDecided` naming who decided and when. Nothing is applied here:
`ai_assets/review/apply.py` applies pending decisions through the action path later, where a
case changed since the reviewer read it makes the decision a conflict and reopens the item.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ai_assets.ops_db.audit import AuditContext, AuditEvent, add_entry
from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import (
    Action,
    ActionOutcome,
    AuditEntry,
    Case,
    Compensation,
    DecisionKind,
    DecisionStatus,
    ReviewDecision,
    ReviewerRole,
    ReviewItem,
    ReviewQueue,
    ReviewStatus,
)
from ai_assets.ops_db.types import utcnow
from ai_assets.review.queue import labels, parse_suggestions
from ai_assets.serving.llm.prompt import OUT_OF_SCOPE

REVIEW_DECISION_EVENT = AuditEvent.REVIEW_DECISION  # the audit event of a recorded decision
MAX_REASON_CHARS = 2000
ITEM_KINDS = frozenset({DecisionKind.APPROVE.value, DecisionKind.CORRECT.value, DecisionKind.REJECT_SPAM.value,
                        DecisionKind.REJECT_OUT_OF_SCOPE.value})
OVERRIDE_ROLES = frozenset({ReviewerRole.SENIOR.value, ReviewerRole.ADMIN.value})


class DecisionError(ValueError):
    """A decision that cannot be recorded as given; the message says why."""


class NotAllowed(DecisionError):
    """The reviewer's role may not make this decision (a senior-queue item, an override)."""


class NotFound(DecisionError):
    pass


class AlreadyDecided(DecisionError):
    """Someone decided first (or the pipeline closed the item): `by` and `at` when known."""

    def __init__(self, by: str | None = None, at: datetime | None = None, *, what: str = "this item"):
        who = f" by {by}" if by else ""
        when = f" at {at:%Y-%m-%d %H:%M} UTC" if at else ""
        super().__init__(f"{what} was already decided{who}{when}")
        self.by, self.at = by, at


class ItemChanged(DecisionError):
    """The item is still open but changed since the reviewer read it (escalated, reopened)."""

    def __init__(self, seen: int | None, current: int):
        super().__init__(f"the item changed since you opened it (version {seen} -> {current}): read it again")
        self.current = current


def _reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise DecisionError("reason: text")
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise DecisionError(f"reason: at most {MAX_REASON_CHARS} characters")
    return reason or None


def _label(intent: str | None) -> str:
    if not isinstance(intent, str) or intent not in labels():
        raise DecisionError(f"intent {intent!r} is not one of the {len(labels())} labels")
    return intent


def _answer(kind: str, intent: str | None, model_intent: str) -> tuple[str, str | None]:
    """(kind, the person's answer) for an item, normalised: choosing the model's own intent is an
    approval and choosing `out_of_scope` an out-of-scope rejection, whatever button was used."""
    if kind == DecisionKind.APPROVE.value:
        if intent not in (None, "", model_intent):
            raise DecisionError(f"approve means the model's intent {model_intent!r}; to choose {intent!r}, correct")
        if model_intent not in labels():
            raise DecisionError(f"the model's answer {model_intent!r} is not a label to approve: choose one")
        intent = model_intent
    if kind in (DecisionKind.APPROVE.value, DecisionKind.CORRECT.value):
        chosen = _label(intent)
        if chosen == OUT_OF_SCOPE:  # "not a banking request" is the out-of-scope rejection
            return DecisionKind.REJECT_OUT_OF_SCOPE.value, OUT_OF_SCOPE
        return (DecisionKind.APPROVE.value if chosen == model_intent else kind), chosen
    if kind == DecisionKind.REJECT_OUT_OF_SCOPE.value:
        return kind, OUT_OF_SCOPE
    return kind, None  # spam: no answer, no training row


def _winner(s: Session, *, item_id: int | None = None, action_id: int | None = None) -> ReviewDecision | None:
    column = ReviewDecision.review_item_id if item_id is not None else ReviewDecision.action_id
    target = item_id if item_id is not None else action_id
    return s.scalar(select(ReviewDecision).where(column == target,
                                                 ReviewDecision.status != DecisionStatus.CONFLICT.value)
                    .order_by(ReviewDecision.id.desc()).limit(1))


def _audit(s: Session, d: ReviewDecision) -> None:
    add_entry(s, AuditContext(actor=d.reviewer), REVIEW_DECISION_EVENT, message_id=d.message_id,
              model_version=d.model_version, decision_id=d.id, review_item_id=d.review_item_id,
              action_id=d.action_id, reviewer=d.reviewer, reviewer_role=d.reviewer_role, kind=d.kind,
              intent=d.intent, reason=d.reason, compensation=d.compensation, model_intent=d.model_intent,
              model_confidence=d.model_confidence, case_id=d.case_id, case_version_seen=d.case_version_seen,
              item_version_seen=d.item_version_seen)


def record_decision(sessions: Sessions, *, reviewer: str, role: str, item_id: int | None = None,
                    action_id: int | None = None, kind: str, intent: str | None = None, reason: str | None = None,
                    compensation: str | None = None, item_version_seen: int | None = None,
                    case_version_seen: int | None = None) -> int:
    """Record a pending decision on review item `item_id`, or an override of automatic action
    `action_id`; its id. Raises `DecisionError` (bad input), `NotAllowed`, `NotFound`,
    `AlreadyDecided` (someone was first) or `ItemChanged` (read the item again)."""
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise DecisionError("a decision needs the reviewer's name")
    if role not in {r.value for r in ReviewerRole}:
        raise DecisionError(f"unknown role {role!r}")
    if (item_id is None) == (action_id is None):
        raise DecisionError("a decision targets exactly one review item or one automatic action")
    reason = _reason(reason)
    try:
        if item_id is not None:
            return _record_item(sessions, reviewer, role, item_id, kind, intent, reason, compensation,
                                item_version_seen, case_version_seen)
        return _record_override(sessions, reviewer, role, action_id, kind, intent, reason, compensation,
                                case_version_seen)
    except IntegrityError:
        # The partial unique index: a concurrent transaction recorded a live decision first.
        with sessions.read() as s:
            first = _winner(s, item_id=item_id, action_id=action_id)
        if first is None:
            raise
        raise AlreadyDecided(first.reviewer, first.decided_at,
                             what="this item" if item_id is not None else "this action") from None


def _record_item(sessions: Sessions, reviewer: str, role: str, item_id: int, kind: str, intent: str | None,
                 reason: str | None, compensation: str | None, item_version_seen: int | None,
                 case_version_seen: int | None) -> int:
    if kind not in ITEM_KINDS:
        raise DecisionError(f"kind {kind!r} for a review item: one of {', '.join(sorted(ITEM_KINDS))}"
                            + ("; an override targets an automatic action" if kind == DecisionKind.OVERRIDE else ""))
    if compensation is not None:
        raise DecisionError("a compensation belongs to an override of an automatic action")
    if not isinstance(item_version_seen, int):
        raise DecisionError("item_version_seen: the version of the item you read")
    with sessions.write() as s:
        item = s.get(ReviewItem, item_id)
        if item is None:
            raise NotFound(f"no review item {item_id}")
        if item.review_queue == ReviewQueue.SENIOR.value and role == ReviewerRole.REVIEWER.value:
            raise NotAllowed("items of the senior queue are decided by a senior reviewer or an admin")
        kind, answer = _answer(kind, intent, item.intent)
        done = s.execute(update(ReviewItem).where(
            ReviewItem.id == item_id, ReviewItem.status == ReviewStatus.OPEN.value,
            ReviewItem.version == item_version_seen).values(status=ReviewStatus.DECIDED.value,
                                                           version=ReviewItem.version + 1))
        if done.rowcount != 1:
            s.expire(item)
            item = s.get(ReviewItem, item_id)
            if item.status == ReviewStatus.OPEN.value:
                raise ItemChanged(item_version_seen, item.version)
            first = _winner(s, item_id=item_id)
            if first is not None:
                raise AlreadyDecided(first.reviewer, first.decided_at)
            raise AlreadyDecided(item.resolved_by, item.resolved_at)
        case_version = case_version_seen
        if item.case_id is not None and case_version is None:
            case_version = s.scalar(select(Case.version).where(Case.id == item.case_id))
        decision = ReviewDecision(
            review_item_id=item.id, message_id=item.message_id, customer_id=item.customer_id, text=item.text,
            kind=kind, intent=answer, compensation=None, reason=reason, reviewer=reviewer, reviewer_role=role,
            decided_at=utcnow(), item_version_seen=item_version_seen, case_id=item.case_id,
            case_version_seen=case_version if item.case_id is not None else None, model_intent=item.intent,
            model_confidence=item.confidence, model_version=item.model_version,
            model_suggestions=[list(p) for p in parse_suggestions(item.suggestions)],
            status=DecisionStatus.PENDING.value)
        s.add(decision)
        s.flush()
        _audit(s, decision)
        return decision.id


def _model_answer(s: Session, action: Action) -> dict[str, Any] | None:
    """The audit `decision` row the automatic action carried out: its detail and model version."""
    rows = list(s.scalars(select(AuditEntry).where(AuditEntry.event == AuditEvent.DECISION,
                                                   AuditEntry.message_id == action.message_id)
                          .order_by(AuditEntry.id)))
    same_policy = [r for r in rows if r.policy_version == action.policy_version]
    chosen = (same_policy or rows or [None])[-1]
    return None if chosen is None else {**(chosen.detail or {}), "model_version": chosen.model_version}


def _record_override(sessions: Sessions, reviewer: str, role: str, action_id: int, kind: str,
                     intent: str | None, reason: str | None, compensation: str | None,
                     case_version_seen: int | None) -> int:
    if kind != DecisionKind.OVERRIDE.value:
        raise DecisionError(f"an automatic action is overridden (kind override), not {kind!r}")
    if role not in OVERRIDE_ROLES:
        raise NotAllowed("overriding an automatic action takes a senior reviewer or an admin")
    if reason is None:
        raise DecisionError("an override needs a reason")
    if compensation not in {c.value for c in Compensation}:
        raise DecisionError(f"an override needs a compensation: one of {', '.join(c.value for c in Compensation)}")
    answer = _label(intent)
    with sessions.write() as s:
        # FOR UPDATE (PostgreSQL): a concurrent override of the same action waits, then sees ours.
        action = s.scalar(select(Action).where(Action.id == action_id).with_for_update())
        if action is None:
            raise NotFound(f"no automatic action {action_id}")
        if action.outcome != ActionOutcome.ACTED.value:
            raise DecisionError(f"action {action_id} was not carried out automatically ({action.outcome}): "
                                "decide its review item instead")
        if (first := _winner(s, action_id=action_id)) is not None:
            raise AlreadyDecided(first.reviewer, first.decided_at, what="this action")
        model = _model_answer(s, action)
        if model is None or not isinstance(model.get("intent"), str):
            raise DecisionError(f"action {action_id} has no recorded model decision to override")
        case = s.get(Case, action.case_id) if action.case_id is not None else None
        if case is None:
            raise DecisionError(f"action {action_id} has no case to compensate on")
        confidence = model.get("confidence")
        decision = ReviewDecision(
            action_id=action.id, message_id=action.message_id, customer_id=case.customer_id,
            text=model.get("text") if isinstance(model.get("text"), str) else "", kind=kind, intent=answer,
            compensation=compensation, reason=reason, reviewer=reviewer, reviewer_role=role, decided_at=utcnow(),
            item_version_seen=None, case_id=case.id,
            case_version_seen=case_version_seen if case_version_seen is not None else case.version,
            model_intent=model["intent"],
            model_confidence=float(confidence) if isinstance(confidence, int | float) else None,
            model_version=model.get("model_version"), model_suggestions=[], status=DecisionStatus.PENDING.value)
        s.add(decision)
        s.flush()
        _audit(s, decision)
        return decision.id
