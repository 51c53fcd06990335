"""The review queue as reviewers read it: filtered, counted, paged and ordered by risk and age;
one item with everything needed to decide it; the automatic actions a senior may override.

Order (`ORDER`): overdue items first, then priority (P1 before P2 before P3), then due time, then
id — the item most likely to hurt if it waits comes first, ties broken stably. An item without a
due time (written before due times were recorded) counts as due when it was created.

Reads only, plain SQLAlchemy, fast on 10,000 open items: every query is bounded by the
`(status, review_queue, priority, due_at)` index's leading columns, pages with LIMIT/OFFSET, and
the filter bar's counts are four GROUP BY queries. Who sees what: a reviewer (role `reviewer`)
the standard queue only; seniors and admins both queues (`visible_queues`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from ai_assets.data.datasets import load_categories
from ai_assets.ops_db.audit import AuditEvent, AuditLog
from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import (
    Action,
    ActionOutcome,
    AuditEntry,
    Case,
    CaseHistory,
    DecisionStatus,
    OutboxKind,
    OutboxMessage,
    ReviewDecision,
    ReviewerRole,
    ReviewItem,
    ReviewQueue,
    ReviewStatus,
)
from ai_assets.ops_db.types import utcnow
from ai_assets.serving.llm.prompt import OUT_OF_SCOPE

PRIORITIES = ("P1", "P2", "P3")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_PAGE = 100_000
PREVIEW_CHARS = 160
MAX_FILTER_TEXT = 200
MAX_AGE_HOURS = 24 * 366


class QueueFilterError(ValueError):
    """A filter value that cannot be used: the message names the field."""


@functools.cache
def labels() -> tuple[str, ...]:
    """The 78 answers a reviewer may give: the 77 BANKING77 intents and `out_of_scope`."""
    return (*load_categories(), OUT_OF_SCOPE)


def visible_queues(role: str) -> tuple[str, ...]:
    if role == ReviewerRole.REVIEWER.value:
        return (ReviewQueue.STANDARD.value,)
    if role in (ReviewerRole.SENIOR.value, ReviewerRole.ADMIN.value):
        return (ReviewQueue.STANDARD.value, ReviewQueue.SENIOR.value)
    return ()


def mask_customer_id(customer_id: str | None) -> str:
    """What a page shows of a customer id: its last four characters."""
    if not customer_id:
        return ""
    return "…" + customer_id[-4:] if len(customer_id) > 4 else "…"


@dataclass(frozen=True)
class QueueFilter:
    """What the queue page asks for; `visible` is what the reviewer's role may see."""

    queue: str | None = None        # standard | senior; None: every visible queue
    reason: str | None = None       # a prefix of the reason ("below_threshold", "case_conflict")
    priority: str | None = None     # P1 | P2 | P3
    intent: str | None = None       # the model's intent
    min_age_hours: float | None = None  # only items waiting at least this long
    visible: tuple[str, ...] = (ReviewQueue.STANDARD.value,)

    def __post_init__(self) -> None:
        if self.queue is not None and self.queue not in self.visible:
            raise QueueFilterError(f"queue {self.queue!r} is not one you may see "
                                   f"({', '.join(self.visible) or 'none'})")
        if self.priority is not None and self.priority not in PRIORITIES:
            raise QueueFilterError(f"priority {self.priority!r}: one of {', '.join(PRIORITIES)}")
        for name in ("reason", "intent"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_FILTER_TEXT):
                raise QueueFilterError(f"{name}: text of at most {MAX_FILTER_TEXT} characters")
        age = self.min_age_hours
        if age is not None and (not isinstance(age, int | float) or not math.isfinite(age)
                                or not 0 <= age <= MAX_AGE_HOURS):
            raise QueueFilterError(f"min_age_hours: a number of hours from 0 to {MAX_AGE_HOURS}")

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, role: str) -> QueueFilter:
        """From a query string; empty values are 'any'. Raises QueueFilterError."""
        def text(name: str) -> str | None:
            value = params.get(name, "")
            return value.strip() or None

        age = text("min_age_hours")
        try:
            hours = float(age) if age is not None else None
        except ValueError:
            raise QueueFilterError("min_age_hours: a number of hours") from None
        return cls(queue=text("queue"), reason=text("reason"), priority=text("priority"), intent=text("intent"),
                   min_age_hours=hours, visible=visible_queues(role))

    def params(self) -> dict[str, str]:
        """The filter as query parameters (for links that keep it)."""
        out = {"queue": self.queue, "reason": self.reason, "priority": self.priority, "intent": self.intent,
               "min_age_hours": None if self.min_age_hours is None else f"{self.min_age_hours:g}"}
        return {k: v for k, v in out.items() if v is not None}

    def without(self, name: str) -> QueueFilter:
        return replace(self, **{name: None})


@dataclass(frozen=True)
class QueueRow:
    id: int
    message_id: str
    customer: str  # masked
    reason: str
    intent: str
    confidence: float | None
    priority: str
    review_queue: str
    case_id: int | None
    created_at: datetime
    due_at: datetime
    overdue: bool
    preview: str


@dataclass(frozen=True)
class QueueCounts:
    """Open items per value of each filter, each counted under the other filters."""

    reason: dict[str, int]
    priority: dict[str, int]
    intent: dict[str, int]
    queue: dict[str, int]
    overdue: int
    total: int


def _due():
    return func.coalesce(ReviewItem.due_at, ReviewItem.created_at)


def _overdue(now: datetime):
    return case((_due() <= now, 0), else_=1)


def _order(now: datetime) -> list:
    return [_overdue(now), ReviewItem.priority, _due(), ReviewItem.id]


def _conditions(f: QueueFilter, now: datetime, *, skip: str | None = None) -> list:
    queues = (f.queue,) if f.queue is not None and skip != "queue" else f.visible
    conditions = [ReviewItem.status == ReviewStatus.OPEN.value, ReviewItem.review_queue.in_(queues)]
    if f.reason is not None and skip != "reason":
        conditions.append(ReviewItem.reason.startswith(f.reason, autoescape=True))
    if f.priority is not None and skip != "priority":
        conditions.append(ReviewItem.priority == f.priority)
    if f.intent is not None and skip != "intent":
        conditions.append(ReviewItem.intent == f.intent)
    if f.min_age_hours is not None:
        conditions.append(ReviewItem.created_at <= now - timedelta(hours=f.min_age_hours))
    return conditions


def _reason_prefix(dialect: str):
    """The reason's code: the part before ':' ("below_threshold: 0.41 < 0.70" -> "below_threshold")."""
    if dialect == "postgresql":
        return func.split_part(ReviewItem.reason, ":", 1)
    colon = func.instr(ReviewItem.reason, ":")
    return case((colon > 0, func.substr(ReviewItem.reason, 1, colon - 1)), else_=ReviewItem.reason)


def _check_page(page: int, page_size: int) -> None:
    if not isinstance(page, int) or not 1 <= page <= MAX_PAGE:
        raise QueueFilterError(f"page: a whole number from 1 to {MAX_PAGE}")
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise QueueFilterError(f"page size: a whole number from 1 to {MAX_PAGE_SIZE}")


def list_items(sessions: Sessions, f: QueueFilter, page: int = 1,
               page_size: int = DEFAULT_PAGE_SIZE) -> tuple[list[QueueRow], int]:
    """One page of open items in queue order, and how many match the filter in all."""
    _check_page(page, page_size)
    now = utcnow()
    where = _conditions(f, now)
    columns = (ReviewItem.id, ReviewItem.message_id, ReviewItem.customer_id, ReviewItem.reason, ReviewItem.intent,
               ReviewItem.confidence, ReviewItem.priority, ReviewItem.review_queue, ReviewItem.case_id,
               ReviewItem.created_at, _due().label("due"), func.substr(ReviewItem.text, 1, PREVIEW_CHARS + 1))
    with sessions.read() as s:
        total = s.scalar(select(func.count()).select_from(ReviewItem).where(*where))
        result = s.execute(select(*columns).where(*where).order_by(*_order(now))
                           .limit(page_size).offset((page - 1) * page_size)).all()
    rows = [QueueRow(id=r[0], message_id=r[1], customer=mask_customer_id(r[2]), reason=r[3], intent=r[4],
                     confidence=r[5], priority=r[6], review_queue=r[7], case_id=r[8], created_at=r[9], due_at=r[10],
                     overdue=r[10] <= now,
                     preview=r[11] if len(r[11]) <= PREVIEW_CHARS else r[11][:PREVIEW_CHARS] + "…")
            for r in result]
    return rows, total


def counts(sessions: Sessions, f: QueueFilter) -> QueueCounts:
    """The filter bar's numbers: per reason code, priority, intent and queue, each under the
    other filters (so a number is what choosing that value would show).

    One GROUP BY scan (queue, priority, intent, reason code) of the open items the role may see,
    the facets summed from it here; a second scan only when the reason filter reaches past a
    reason code (it has a ':'), which the grouped codes cannot answer."""
    now = utcnow()
    code = _reason_prefix(sessions.dialect).label("code")
    overdue = func.coalesce(func.sum(case((_due() <= now, 1), else_=0)), 0)
    grouping = (ReviewItem.review_queue, ReviewItem.priority, ReviewItem.intent, code)
    base = QueueFilter(min_age_hours=f.min_age_hours, visible=f.visible)  # what every facet shares
    with sessions.read() as s:
        def cube(where: QueueFilter) -> list[tuple[str, str, str, str, int, int]]:
            query = select(*grouping, func.count(), overdue).where(*_conditions(where, now)).group_by(*grouping)
            return [(q, p, i, str(c), int(n), int(o)) for q, p, i, c, n, o in s.execute(query)]

        everything = cube(base)
        exact_reason = f.reason is not None and ":" in f.reason
        within_reason = cube(replace(base, reason=f.reason)) if exact_reason else everything

    def keep(row: tuple, skip: str, *, reason_done: bool = False) -> bool:
        queue, priority, intent, reason_code = row[:4]
        return ((skip == "queue" or f.queue is None or queue == f.queue)
                and (skip == "priority" or f.priority is None or priority == f.priority)
                and (skip == "intent" or f.intent is None or intent == f.intent)
                and (skip == "reason" or reason_done or f.reason is None or reason_code.startswith(f.reason)))

    def per(position: int, skip: str) -> dict[str, int]:
        rows = everything if skip == "reason" else within_reason
        tally: dict[str, int] = {}
        for row in rows:
            if keep(row, skip, reason_done=exact_reason and skip != "reason"):
                tally[row[position]] = tally.get(row[position], 0) + row[4]
        return dict(sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])))

    matching = [row for row in within_reason if keep(row, "", reason_done=exact_reason)]
    return QueueCounts(reason=per(3, "reason"), priority=dict(sorted(per(1, "priority").items())),
                       intent=per(2, "intent"), queue=per(0, "queue"), overdue=sum(r[5] for r in matching),
                       total=sum(r[4] for r in matching))


def next_item_id(sessions: Sessions, f: QueueFilter, *, after: int | None = None) -> int | None:
    """The open item to show next: the first after item `after` in queue order (after a decision
    or a skip), wrapping round to the start; None when nothing else is open under the filter."""
    now = utcnow()
    where = _conditions(f, now)
    with sessions.read() as s:
        if after is not None:
            where.append(ReviewItem.id != after)
            current = s.execute(select(ReviewItem.priority, _due()).where(ReviewItem.id == after)).first()
            if current is not None:
                priority, due = current
                overdue = 0 if due <= now else 1
                o, d = _overdue(now), _due()
                later = or_(o > overdue,
                            and_(o == overdue, ReviewItem.priority > priority),
                            and_(o == overdue, ReviewItem.priority == priority, d > due),
                            and_(o == overdue, ReviewItem.priority == priority, d == due, ReviewItem.id > after))
                found = s.scalar(select(ReviewItem.id).where(*where, later).order_by(*_order(now)).limit(1))
                if found is not None:
                    return found
        return s.scalar(select(ReviewItem.id).where(*where).order_by(*_order(now)).limit(1))


# --- one item ---------------------------------------------------------------------------


@dataclass
class ItemDetail:
    item: dict[str, Any]
    suggestions: list[tuple[str, float]]
    case: dict[str, Any] | None
    case_history: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    outbox: list[dict[str, Any]] = field(default_factory=list)


def parse_suggestions(value: object) -> list[tuple[str, float]]:
    """`[[intent, score], ...]` as stored; anything malformed is dropped, not shown or crashed on."""
    out = []
    if isinstance(value, list):
        for pair in value:
            if (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], int | float) and math.isfinite(pair[1])):
                out.append((pair[0], float(pair[1])))
    return out


def _case(s: Session, case_id: int | None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    if case_id is None:
        return None, []
    row = s.get(Case, case_id)
    if row is None:
        return None, []
    history = s.scalars(select(CaseHistory).where(CaseHistory.case_id == case_id).order_by(CaseHistory.version))
    return ({"id": row.id, "customer": mask_customer_id(row.customer_id), "queue": row.queue,
             "priority": row.priority, "status": row.status, "intent": row.intent, "assignee": row.assignee,
             "message_count": row.message_count, "version": row.version, "opened_at": row.opened_at,
             "updated_at": row.updated_at, "updated_by": row.updated_by},
            [{"version": h.version, "actor": h.actor, "change": h.change, "message_id": h.message_id, "at": h.at}
             for h in history])


def _decision_dict(d: ReviewDecision) -> dict[str, Any]:
    return {"id": d.id, "kind": d.kind, "intent": d.intent, "compensation": d.compensation, "reason": d.reason,
            "reviewer": d.reviewer, "reviewer_role": d.reviewer_role, "decided_at": d.decided_at,
            "status": d.status, "model_intent": d.model_intent, "model_confidence": d.model_confidence,
            "applied_at": d.applied_at, "result": d.result, "review_item_id": d.review_item_id,
            "action_id": d.action_id}


def item_detail(sessions: Sessions, item_id: int) -> ItemDetail | None:
    """One item with its suggestions, case and case history, audit trail and decisions."""
    now = utcnow()
    with sessions.read() as s:
        row = s.get(ReviewItem, item_id)
        if row is None:
            return None
        due = row.due_at or row.created_at
        item = {"id": row.id, "message_id": row.message_id, "customer": mask_customer_id(row.customer_id),
                "reason": row.reason, "intent": row.intent, "confidence": row.confidence, "queue": row.queue,
                "priority": row.priority, "text": row.text, "case_id": row.case_id, "status": row.status,
                "created_at": row.created_at, "due_at": due, "overdue": due <= now,
                "review_queue": row.review_queue, "escalated_at": row.escalated_at, "version": row.version,
                "model_version": row.model_version, "resolved_at": row.resolved_at,
                "resolved_by": row.resolved_by, "resolution": row.resolution}
        case_, history = _case(s, row.case_id)
        decisions = [_decision_dict(d) for d in s.scalars(
            select(ReviewDecision).where(or_(ReviewDecision.review_item_id == item_id,
                                             ReviewDecision.message_id == row.message_id))
            .order_by(ReviewDecision.id))]
    audit = AuditLog(sessions).story(row.message_id).audit
    return ItemDetail(item, parse_suggestions(row.suggestions), case_, history, audit, decisions)


# --- automatic actions, for overrides ---------------------------------------------------


@dataclass(frozen=True)
class ActionRow:
    id: int
    message_id: str
    action: str
    decision: str
    at: datetime
    case_id: int | None
    case_queue: str | None
    case_priority: str | None
    case_status: str | None
    customer: str
    model_intent: str | None
    model_confidence: float | None
    overridden_by: str | None
    override_status: str | None


def _model_answers(s: Session, actions: Sequence[tuple[int, str, str]]) -> dict[int, dict[str, Any]]:
    """action id -> the audit `decision` row's detail (and model version) that the action carried out."""
    by_message: dict[str, list[AuditEntry]] = {}
    message_ids = sorted({m for _, m, _ in actions})
    for start in range(0, len(message_ids), 500):
        for entry in s.scalars(select(AuditEntry).where(AuditEntry.event == AuditEvent.DECISION,
                                                        AuditEntry.message_id.in_(message_ids[start:start + 500]))
                               .order_by(AuditEntry.id)):
            by_message.setdefault(entry.message_id, []).append(entry)
    out = {}
    for action_id, message_id, policy_version in actions:
        entries = by_message.get(message_id, [])
        same_policy = [e for e in entries if e.policy_version == policy_version]
        chosen = (same_policy or entries or [None])[-1]
        if chosen is not None:
            out[action_id] = {**(chosen.detail or {}), "model_version": chosen.model_version}
    return out


def automatic_actions(sessions: Sessions, page: int = 1,
                      page_size: int = DEFAULT_PAGE_SIZE) -> tuple[list[ActionRow], int]:
    """Messages the pipeline acted on by itself, newest first, with the model's answer and any override."""
    _check_page(page, page_size)
    acted = Action.outcome == ActionOutcome.ACTED.value
    with sessions.read() as s:
        total = s.scalar(select(func.count()).select_from(Action).where(acted))
        rows = s.execute(select(Action.id, Action.message_id, Action.action, Action.decision, Action.at,
                                Action.case_id, Action.policy_version, Case.queue, Case.priority, Case.status,
                                Case.customer_id)
                         .outerjoin(Case, Case.id == Action.case_id).where(acted)
                         .order_by(Action.id.desc()).limit(page_size).offset((page - 1) * page_size)).all()
        answers = _model_answers(s, [(r.id, r.message_id, r.policy_version) for r in rows])
        overrides = {d.action_id: d for d in s.scalars(
            select(ReviewDecision).where(ReviewDecision.action_id.in_([r.id for r in rows]),
                                         ReviewDecision.status != DecisionStatus.CONFLICT.value))}
    out = []
    for r in rows:
        answer, override = answers.get(r.id, {}), overrides.get(r.id)
        confidence = answer.get("confidence")
        out.append(ActionRow(
            id=r.id, message_id=r.message_id, action=r.action, decision=r.decision, at=r.at, case_id=r.case_id,
            case_queue=r.queue, case_priority=r.priority, case_status=r.status,
            customer=mask_customer_id(r.customer_id), model_intent=answer.get("intent"),
            model_confidence=float(confidence) if isinstance(confidence, int | float) else None,
            overridden_by=override.reviewer if override else None,
            override_status=override.status if override else None))
    return out, total


@dataclass
class ActionDetail:
    action: dict[str, Any]
    model: dict[str, Any]  # intent, confidence, model_version, text (masked), decision, reason
    case: dict[str, Any] | None
    case_history: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


def action_detail(sessions: Sessions, action_id: int) -> ActionDetail | None:
    """One automatic action: what the model said and read (masked text), its case, what was sent."""
    with sessions.read() as s:
        row = s.get(Action, action_id)
        if row is None:
            return None
        answer = _model_answers(s, [(row.id, row.message_id, row.policy_version)]).get(row.id, {})
        case_, history = _case(s, row.case_id)
        outbox = []
        for o in s.scalars(select(OutboxMessage).where(OutboxMessage.action_id == action_id)
                           .order_by(OutboxMessage.id)):
            # An e-mail's destination is the customer's address (PII): shown as the kind only.
            outbox.append({"id": o.id, "kind": o.kind, "subject": o.subject, "status": o.status,
                           "attempts": o.attempts, "created_at": o.created_at, "delivered_at": o.delivered_at,
                           "destination": None if o.kind == OutboxKind.EMAIL.value else o.destination,
                           "body": (o.payload or {}).get("body") if o.kind == OutboxKind.EMAIL.value else None})
        decisions = [_decision_dict(d) for d in s.scalars(
            select(ReviewDecision).where(ReviewDecision.action_id == action_id).order_by(ReviewDecision.id))]
    confidence = answer.get("confidence")
    model = {"intent": answer.get("intent"),
             "confidence": float(confidence) if isinstance(confidence, int | float) else None,
             "model_version": answer.get("model_version"), "text": answer.get("text"),
             "decision": answer.get("decision"), "reason": answer.get("reason")}
    action = {"id": row.id, "message_id": row.message_id, "action": row.action, "decision": row.decision,
              "outcome": row.outcome, "policy_version": row.policy_version, "case_id": row.case_id,
              "run_id": row.run_id, "partition": row.partition, "at": row.at}
    audit = AuditLog(sessions).story(row.message_id).audit
    return ActionDetail(action, model, case_, history, outbox, audit, decisions)
