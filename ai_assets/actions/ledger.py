"""Acting on triaged messages: one transaction per message — the action ledger row, the
case opened or updated, the e-mail and webhook event in the outbox, the review item, the
audit rows — all committed together or not at all.

- Idempotent: the ledger's unique idempotency key (message id + action + policy version +
  content hash) and its one-action-per-message-and-policy-version constraint make a re-run, a
  backfill, a retried step or a concurrent duplicate run find the message done and write nothing.
- Ids are not unique across days in real feeds. The same id with the same content (customer,
  channel, text) is a re-delivery: found done, counted, never acted on twice. The same id with
  other content is another message: it is not acted on (its id is taken, and acting would touch
  the first message's case); it goes to review as `id_conflict`, visibly.
- Conflict-safe: the case versions are read once, before acting (`open_case_refs`). An
  update names the version read; if a person changed the case since, nothing of the
  pipeline's is written to the case: the conflict is recorded and the message goes to review.
- Model output is data here, never instructions: e-mails come from the policy's templates,
  filled with the case id and the intent's topic only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ai_assets.actions.delivery.transports import DEFAULT_RECIPIENT_DOMAIN, customer_address
from ai_assets.actions.routing_policy import RoutingPolicy
from ai_assets.actions.triage import Decision, email_key, event_key, topic
from ai_assets.ops_db.audit import AuditContext, AuditEvent, add_entry
from ai_assets.ops_db.cases import PIPELINE_ACTOR_PREFIX, CaseKey, CaseRef, open_case_refs
from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import (
    Action,
    ActionOutcome,
    AuditEntry,
    Case,
    CaseHistory,
    CaseStatus,
    DecisionStatus,
    OutboxKind,
    OutboxMessage,
    ReviewDecision,
    ReviewItem,
)
from ai_assets.ops_db.types import utcnow

if TYPE_CHECKING:
    from ai_assets.ops_db import OpsDb

ALREADY_DONE = "already_done"  # not an outcome stored: the count of messages found done
REDELIVERED = "redelivered"  # of those, found done from another partition: the same message sent again
ID_CONFLICT = "id_conflict"  # an id already used by a message with other content: sent to review
ID_REUSED_REASON = "message_id_reused"


def _who_else_changed(s: Session, case_id: int, after_version: int, current_version: int) -> str | None:
    """Who, other than a pipeline run, changed the case after `after_version`; None when every
    change since is a pipeline run's. Fails closed: a version bump without its history row (a
    CRM or a hand-written UPDATE) counts as someone else's change."""
    actors = list(s.scalars(select(CaseHistory.actor).where(CaseHistory.case_id == case_id,
                                                            CaseHistory.version > after_version)
                            .order_by(CaseHistory.version)))
    if len(actors) != current_version - after_version:
        return "a writer that left no case history"
    return next((a for a in actors if not a.startswith(PIPELINE_ACTOR_PREFIX)), None)


@dataclass(frozen=True)
class MessageDecision:
    """One row of `triage_decisions`: what to do with one message."""
    message_id: str
    customer_id: str
    intent: str
    confidence: float | None
    decision: str
    action: str
    reason: str | None
    queue: str
    priority: str
    policy_version: str
    idempotency_key: str
    text: str  # PII-masked, as validated
    content_hash: str = ""  # '' only for callers that never see reused ids (benchmarks, tests)
    model_version: str | None = None
    model_call: Mapping[str, Any] = field(default_factory=dict)  # tier, tokens, cost, latency, cache hit
    # The local model's best labels with calibrated scores, best first: what a reviewer is offered.
    suggestions: tuple[tuple[str, float], ...] = ()


    @classmethod
    def from_triage_row(cls, row: Mapping[str, Any]) -> MessageDecision:
        """A row of `triage_decisions` (TRIAGE_COLUMNS)."""
        return cls(
            message_id=row["message_id"], customer_id=row["customer_id"], intent=row["intent"],
            confidence=float(row["confidence"]), decision=row["decision"], action=row["action"],
            reason=row["reason"] if isinstance(row["reason"], str) else None, queue=row["queue"],
            priority=row["priority"], policy_version=row["policy_version"],
            idempotency_key=row["idempotency_key"], text=row["text"], content_hash=row["content_hash"],
            model_version=row["answered_by"],
            model_call={"tier": row["tier"], "input_tokens": int(row["input_tokens"]),
                        "output_tokens": int(row["output_tokens"]), "cost_usd": float(row["cost_usd"]),
                        "latency_ms": float(row["latency_ms"]), "cache_hit": bool(row["cache_hit"])},
            # Partitions written before suggestions were recorded have no column: none offered.
            suggestions=parse_suggestions(row.get("suggestions")))


def parse_suggestions(value: object) -> tuple[tuple[str, float], ...]:
    """The `suggestions` column (JSON `[[intent, score], ...]`) as pairs; () when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return ()
    try:
        pairs = json.loads(value)
        return tuple((str(intent), round(float(score), 6)) for intent, score in pairs)
    except (ValueError, TypeError):
        return ()


@dataclass(frozen=True)
class ActionResult:
    message_id: str
    outcome: str  # what this call did: acted | review | conflict | id_conflict | already_done | redelivered
    case_id: int | None = None
    recorded: str | None = None  # the ledger's outcome for the message (the same on every re-run)

    @property
    def state(self) -> str:
        return self.recorded or self.outcome


class ActionLedger:
    """Executes decisions for one run and partition; `recipient_domain` stands in for the CRM's
    contact lookup (customer id -> address)."""

    def __init__(self, sessions: Sessions, policy: RoutingPolicy, audit: AuditContext, *,
                 recipient_domain: str = DEFAULT_RECIPIENT_DOMAIN):
        self._sessions = sessions
        self._policy = policy
        self._audit = audit
        self._recipient_domain = recipient_domain

    def read_cases(self, decisions: Iterable[MessageDecision]) -> dict[CaseKey, CaseRef]:
        return open_case_refs(self._sessions, (d.customer_id for d in decisions))

    def execute_all(self, decisions: list[MessageDecision]) -> list[ActionResult]:
        """Read the customers' cases once, then act on each message in its own transaction."""
        seen = self.read_cases(decisions)
        return [self.execute(d, seen) for d in decisions]

    def execute(self, d: MessageDecision, seen: dict[CaseKey, CaseRef]) -> ActionResult:
        """Act on one message; `seen` holds the case versions the pipeline read and is updated
        with the pipeline's own writes."""
        if d.policy_version != self._policy.version:
            raise ValueError(f"decision for {d.message_id} was made under policy {d.policy_version}, "
                             f"this ledger acts under {self._policy.version}")
        if d.decision != Decision.REVIEW:
            route = self._policy.routes.get(d.intent)
            if route is None or (route.action, route.queue, route.priority) != (d.action, d.queue, d.priority):
                raise ValueError(f"decision for {d.message_id} ({d.intent}: {d.action} {d.queue} {d.priority}) "
                                 f"does not match policy {self._policy.version}: re-materialize triage_decisions")
        try:
            with self._sessions.write() as s:
                if done := self._done(s, d):
                    return done
                if d.decision == Decision.REVIEW:
                    return self._review(s, d, ActionOutcome.REVIEW, d.reason or "review", case_id=None)
                return self._act(s, d, seen)
        except IntegrityError:
            # A concurrent run acted first (unique key), or someone opened the customer's case
            # after we read (one open case per customer and queue): the first is done; the
            # second is acted on again, now seeing that case (a person's: a conflict; another
            # pipeline run's: updated). Any other integrity error is a real failure.
            with self._sessions.write() as s:
                if done := self._done(s, d):
                    return done
                opened = s.scalar(select(exists().where(Case.customer_id == d.customer_id, Case.queue == d.queue,
                                                        Case.status != CaseStatus.CLOSED.value)))
                if not opened or d.decision == Decision.REVIEW:
                    raise
                return self._act(s, d, seen)

    def _done(self, s: Session, d: MessageDecision) -> ActionResult | None:
        """The ledger's record when the message was already dealt with under this policy version
        (acted, sent to review, or refused as an id conflict), else None."""
        same_content = Action.content_hash.in_((d.content_hash, ""))
        done = s.execute(select(Action.outcome, Action.case_id, Action.partition).where(
            (Action.idempotency_key == d.idempotency_key)
            | ((Action.message_id == d.message_id) & (Action.policy_version == d.policy_version) & same_content)
        )).first()
        if done is not None:
            again = done.partition is not None and done.partition != self._audit.partition
            return ActionResult(d.message_id, REDELIVERED if again else ALREADY_DONE, done.case_id,
                                recorded=done.outcome)
        if s.scalar(select(exists().where(ReviewItem.idempotency_key == d.idempotency_key,
                                          ReviewItem.reason.startswith(ID_REUSED_REASON)))):
            return ActionResult(d.message_id, ALREADY_DONE, None, recorded=ID_CONFLICT)
        earlier = s.execute(select(Action.policy_version, Action.content_hash, Action.partition)
                            .where(Action.message_id == d.message_id).order_by(Action.id.desc()).limit(1)).first()
        if earlier is None:
            return None
        if earlier.content_hash not in (d.content_hash, ""):
            return self._id_conflict(s, d, earlier.partition)
        add_entry(s, self._audit, AuditEvent.POLICY_CHANGE, message_id=d.message_id,
                  policy_version=d.policy_version, previous_policy_version=earlier.policy_version,
                  note="acting again under a new policy version; earlier actions are kept")
        return None

    def _id_conflict(self, s: Session, d: MessageDecision, first_partition: str | None) -> ActionResult:
        """Another message already holds this id: nothing is acted on; a person sees both."""
        why = f"{ID_REUSED_REASON}: id first used in partition {first_partition} by a message with other content"
        self._audit_decision(s, d)
        add_entry(s, self._audit, AuditEvent.CONFLICT, message_id=d.message_id, policy_version=d.policy_version,
                  detail=why, content_hash=d.content_hash)
        s.add(self._review_item(d, why, case_id=None))
        add_entry(s, self._audit, AuditEvent.REVIEW, message_id=d.message_id, policy_version=d.policy_version,
                  reason=why, action_id=None, case_id=None)
        return ActionResult(d.message_id, ID_CONFLICT, None, recorded=ID_CONFLICT)

    def _ledger(self, s: Session, d: MessageDecision, outcome: ActionOutcome, case_id: int | None) -> Action:
        self._audit_decision(s, d)
        action = Action(idempotency_key=d.idempotency_key, message_id=d.message_id, content_hash=d.content_hash,
                        action=d.action,
                        decision=d.decision, outcome=outcome.value, policy_version=d.policy_version,
                        case_id=case_id, run_id=self._audit.run_id, partition=self._audit.partition)
        s.add(action)
        s.flush()
        return action

    def _audit_decision(self, s: Session, d: MessageDecision) -> None:
        if d.model_call:
            add_entry(s, self._audit, AuditEvent.MODEL_CALL, message_id=d.message_id,
                      model_version=d.model_version, **dict(d.model_call))
        add_entry(s, self._audit, AuditEvent.DECISION, message_id=d.message_id, policy_version=d.policy_version,
                  model_version=d.model_version, decision=d.decision, action=d.action, reason=d.reason,
                  intent=d.intent, confidence=d.confidence, queue=d.queue, priority=d.priority,
                  text=d.text)  # masked, as validated: what a reviewer overriding the action reads

    def _review(self, s: Session, d: MessageDecision, outcome: ActionOutcome, reason: str,
                case_id: int | None, conflict: str | None = None) -> ActionResult:
        action = self._ledger(s, d, outcome, case_id)
        if conflict is not None:
            add_entry(s, self._audit, AuditEvent.CONFLICT, message_id=d.message_id,
                      policy_version=d.policy_version, case_id=case_id, detail=conflict)
        s.add(self._review_item(d, reason, case_id))
        add_entry(s, self._audit, AuditEvent.REVIEW, message_id=d.message_id, policy_version=d.policy_version,
                  reason=reason, action_id=action.id, case_id=case_id)
        return ActionResult(d.message_id, outcome.value, case_id)

    def _review_item(self, d: MessageDecision, reason: str, case_id: int | None) -> ReviewItem:
        now = utcnow()
        return ReviewItem(idempotency_key=d.idempotency_key, message_id=d.message_id, customer_id=d.customer_id,
                          reason=reason[:200], intent=d.intent, confidence=d.confidence, queue=d.queue,
                          priority=d.priority, text=d.text, case_id=case_id, created_at=now,
                          suggestions=[[intent, score] for intent, score in d.suggestions],
                          model_version=d.model_version,
                          due_at=now + self._policy.review_due_after(d.priority))

    def _conflict(self, s: Session, d: MessageDecision, case_id: int | None, why: str) -> ActionResult:
        return self._review(s, d, ActionOutcome.CONFLICT, f"case_conflict: {why}", case_id, conflict=why)

    def _act(self, s: Session, d: MessageDecision, seen: dict[CaseKey, CaseRef]) -> ActionResult:
        try:  # validation refuses such ids; a decision from elsewhere must not reach the outbox either
            address = customer_address(d.customer_id, self._recipient_domain)
        except ValueError:
            return self._review(s, d, ActionOutcome.REVIEW, "undeliverable_customer_id", case_id=None)
        key = (d.customer_id, d.queue)
        read = seen.get(key)
        # FOR UPDATE (PostgreSQL; SQLite's write transactions are already serial): a concurrent
        # writer of this case waits for our commit, so the version we compare is the one we write over.
        current = s.execute(select(Case.id, Case.version, Case.priority).where(
            Case.customer_id == d.customer_id, Case.queue == d.queue,
            Case.status != CaseStatus.CLOSED.value).with_for_update()).first()
        now = utcnow()
        if current is None and read is not None:
            return self._conflict(s, d, read.id, f"case {read.id} was closed after the pipeline read v{read.version}")
        if current is not None and (read is None or (current.id, current.version) != (read.id, read.version)):
            after = read.version if read is not None and read.id == current.id else 0
            person = _who_else_changed(s, current.id, after, current.version)
            if person is not None:
                return self._conflict(s, d, current.id, f"case {current.id} changed by {person} after the "
                                      f"pipeline read {f'v{after}' if after else 'the cases'}; now v{current.version}")
        if current is None:
            case = Case(customer_id=d.customer_id, queue=d.queue, priority=d.priority, intent=d.intent,
                        message_count=1, last_message_id=d.message_id, version=1, opened_at=now, updated_at=now,
                        updated_by=self._audit.actor)
            s.add(case)
            s.flush()
            case_id, version, event = case.id, 1, "case.opened"
            change = {"opened": True, "queue": d.queue, "priority": d.priority, "intent": d.intent}
        else:
            case_id, version, event = current.id, current.version + 1, "case.updated"
            priority = min(current.priority, d.priority)  # "P1" < "P2": the more urgent wins
            # Acting again under a new policy version: the message is on the case already.
            known = s.scalar(select(exists().where(CaseHistory.case_id == case_id,
                                                   CaseHistory.message_id == d.message_id)))
            done = s.execute(update(Case).where(Case.id == case_id, Case.version == current.version).values(
                message_count=Case.message_count + (0 if known else 1), last_message_id=d.message_id, intent=d.intent,
                priority=priority, version=version, updated_at=now, updated_by=self._audit.actor))
            if done.rowcount != 1:  # cannot happen under the row lock; refuse rather than overwrite
                return self._conflict(s, d, case_id, f"case {case_id} changed during the update")
            change = {"message_added": d.message_id, "intent": d.intent, "priority": priority}
        s.add(CaseHistory(case_id=case_id, version=version, actor=self._audit.actor, change=change,
                          message_id=d.message_id, at=now))
        action = self._ledger(s, d, ActionOutcome.ACTED, case_id)
        self._outbox(s, d, action, case_id, event, address)
        add_entry(s, self._audit, AuditEvent.ACTION, message_id=d.message_id, policy_version=d.policy_version,
                  model_version=d.model_version, action=d.action, decision=d.decision, case_id=case_id,
                  case_version=version, webhook_event=event)
        seen[key] = CaseRef(case_id, version)
        return ActionResult(d.message_id, ActionOutcome.ACTED.value, case_id)

    def _outbox(self, s: Session, d: MessageDecision, action: Action, case_id: int, event: str,
                address: str) -> None:
        template = (self._policy.acknowledgement if d.decision == Decision.ACT_AND_NOTIFY
                    else self._policy.templates[d.action])
        subject, body = template.render(case_id=case_id, topic=topic(d.intent), queue=d.queue, priority=d.priority)
        mail_key = email_key(d.message_id)
        # One e-mail per customer message ever (acting again under a new policy writes none).
        if not s.scalar(select(exists().where(OutboxMessage.idempotency_key == mail_key))):
            s.add(OutboxMessage(idempotency_key=mail_key, action_id=action.id, message_id=d.message_id,
                                partition=self._audit.partition, kind=OutboxKind.EMAIL.value,
                                destination=address, subject=subject,
                                payload={"body": body}))
        s.add(OutboxMessage(
            idempotency_key=event_key(d.idempotency_key), action_id=action.id, message_id=d.message_id,
            partition=self._audit.partition, kind=OutboxKind.WEBHOOK.value, destination=event,
            payload={"event": event, "case_id": case_id, "message_id": d.message_id, "customer_id": d.customer_id,
                     "queue": d.queue, "priority": d.priority, "intent": d.intent, "action": d.action,
                     "needs_person": d.decision == Decision.ACT_AND_NOTIFY, "policy_version": d.policy_version}))


def outcome_counts(results: Iterable[ActionResult]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {k: counts.get(k, 0) for k in (*(o.value for o in ActionOutcome), ID_CONFLICT, ALREADY_DONE, REDELIVERED)}


@dataclass(frozen=True)
class Tally:
    lost: int = 0
    duplicated: int = 0
    half_done: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.lost + other.lost, self.duplicated + other.duplicated, self.half_done + other.half_done)


def action_tally(db: OpsDb | Sessions, message_ids: list[str], policy_version: str, *,
                 contents: Mapping[str, tuple[str, str]] | None = None) -> Tally:
    """Counted in the database for these messages. Lost: no ledger row under the policy version
    (with `contents`, message id -> (content hash, idempotency key): no ledger row for that
    content, and no review item for its key as an id conflict — a message whose id another
    message holds is lost unless a person was given it).
    Duplicated: more than one ledger row, customer e-mail or review item per message, or more
    case changes than acted rows. Half-done: an acted row without its case change, e-mail,
    event or audit row; a review/conflict row without its review item; a case change or
    outbox row of a message the ledger never acted on. What a reviewer's applied decision wrote
    later (its case change, e-mail and event, named in the decision's `result` by
    ai_assets/review/apply.py) is the review's work, not the ledger's, and is not counted."""
    sessions = db if isinstance(db, Sessions) else db.sessions
    ledger, acted, history, emails, events, audited, reviews, outboxed = [], Counter(), Counter(), Counter(), \
        set(), set(), Counter(), set()
    id_conflicts: set[str] = set()
    ids = sorted(set(message_ids))
    with sessions.read() as s:
        for start in range(0, len(ids), 500):  # bounded IN lists
            chunk = ids[start:start + 500]

            def per_message(column, *where):
                return Counter(dict(s.execute(select(column, func.count()).where(*where).group_by(column)).all()))

            reviewed = [r or {} for r in s.scalars(select(ReviewDecision.result).where(
                ReviewDecision.message_id.in_(chunk), ReviewDecision.status == DecisionStatus.APPLIED.value))]
            review_versions = {(r.get("case_id"), r.get("case_version")) for r in reviewed}
            not_review = OutboxMessage.idempotency_key.not_in(
                sorted({key for r in reviewed for key in r.get("outbox_keys", ())}))
            ledger += s.execute(select(Action.message_id, Action.outcome, Action.idempotency_key,
                                       Action.content_hash).where(
                Action.message_id.in_(chunk), Action.policy_version == policy_version)).all()
            acted += per_message(Action.message_id, Action.message_id.in_(chunk),
                                 Action.outcome == ActionOutcome.ACTED.value)
            history += Counter(m for m, case_id, version in s.execute(
                select(CaseHistory.message_id, CaseHistory.case_id, CaseHistory.version)
                .where(CaseHistory.message_id.in_(chunk))) if (case_id, version) not in review_versions)
            emails += per_message(OutboxMessage.message_id, OutboxMessage.message_id.in_(chunk),
                                  OutboxMessage.kind == OutboxKind.EMAIL.value, not_review)
            events |= set(s.scalars(select(Action.idempotency_key)
                                    .join(OutboxMessage, OutboxMessage.action_id == Action.id)
                                    .where(Action.message_id.in_(chunk), Action.policy_version == policy_version,
                                           OutboxMessage.kind == OutboxKind.WEBHOOK.value, not_review)))
            audited |= set(s.scalars(select(AuditEntry.message_id).where(
                AuditEntry.message_id.in_(chunk), AuditEntry.event == AuditEvent.ACTION,
                AuditEntry.policy_version == policy_version)))
            reviews += per_message(ReviewItem.idempotency_key, ReviewItem.message_id.in_(chunk))
            outboxed |= set(s.scalars(select(OutboxMessage.message_id).where(OutboxMessage.message_id.in_(chunk),
                                                                              not_review)))
            id_conflicts |= set(s.scalars(select(ReviewItem.idempotency_key).where(
                ReviewItem.message_id.in_(chunk), ReviewItem.reason.startswith(ID_REUSED_REASON))))
    per_ledger = Counter(m for m, _, _, _ in ledger)
    lost = len(set(ids) - set(per_ledger))
    if contents is not None:
        held_by_other = {m for m, _, _, content in ledger
                         if m in contents and content not in (contents[m][0], "")}
        lost += sum(1 for m in held_by_other if contents[m][1] not in id_conflicts)
    duplicated = (sum(n - 1 for n in per_ledger.values() if n > 1) + sum(n - 1 for n in emails.values() if n > 1)
                  + sum(n - 1 for n in reviews.values() if n > 1)
                  + sum(max(0, n - acted.get(m, 0)) for m, n in history.items()))
    half_done = 0
    for message_id, outcome, key, _ in ledger:
        if outcome == ActionOutcome.ACTED.value:
            half_done += (message_id not in history) + (message_id not in emails) + (key not in events) \
                + (message_id not in audited)
        elif reviews.get(key, 0) == 0:
            half_done += 1
    half_done += len((set(history) | outboxed) - set(acted))
    return Tally(lost, duplicated, half_done)
