"""Reviewers' decisions take effect: each pending decision applied through the same path as the
pipeline's automatic actions — the case changed under its version check with a history row, the
customer e-mail and the webhook event in the outbox, the audit rows — in one transaction, or not
at all.

What each kind does (`apply_pending`):
- approve / correct: the person's intent's policy route. The customer's open case in that
  queue is updated (message added, intent set, the more urgent priority kept), or a case is
  opened (actor: the reviewer, history v1). The action's e-mail (`templates[action]`, the
  acknowledgement for never-automated intents) under `email_key(message_id)`: one e-mail per
  customer message, ever, so a message the pipeline already wrote about gets none. A
  `case.reviewed` event keyed on the decision.
- reject_spam / reject_out_of_scope: nothing sent, no case touched (the item's case, if any,
  is left as it is).
- override: the compensating action on the overridden automatic action's case (below), and a
  `case.overridden` event keyed on the decision.

Every applied decision: the review item resolved (`resolved_at`, `resolved_by`, `resolution`), the
decision `applied` (`applied_at`, `applied_run_id`, `result`: case id and version, outbox keys),
a `review_applied` audit row with the model's answer beside the person's, and for anything that
acted an `action` audit row. Audit rows carry the reviewer as actor; the run that applied them is
`applied_by` in the detail and `run_id` on the row. Outbox and audit rows of a decision have no
partition: the applying run is not a day's, and a day's figures and checks count that day's
pipeline work only; the outbox sweep (`outbox_retry_job`, all partitions) delivers them. The
outbox rows hang on a ledger row (`outbox.action_id`): for an item, the one that sent the message
to review; for an override, the overridden action.

Overrides (`compensation`). The case gets the corrected intent and one of:
- `followup_email`: the correction e-mail (`policy.correction_template`) keyed on the overridden
  action (`email_key("correction:action:<id>")`): one correction per automatic action, ever.
- `reopen_case`: a closed case is opened again (queue and priority kept: moving it is `requeue`).
  If the customer meanwhile has another open case in that queue, reopening would make two (the
  unique index forbids it): the decision is a `conflict` and the reviewer chooses again (requeue,
  or edit the other case) — not silently turned into something the reviewer did not pick.
- `requeue`: the case moves to the corrected intent's queue and priority (a closed case is
  opened again: moving a closed case would reach nobody). If the customer already has an open
  case in that queue: `conflict`, never a violation of the one-open-case index.
Nothing the model wrote is overwritten: the automatic action's ledger, outbox and audit rows stay;
the case history row names both intents (`model_intent`, `intent`) and the values it replaced.

Conflicts. A decision names the case its reviewer saw and its version (`case_id`,
`case_version_seen`). If that case changed since — by anyone but a pipeline run or the reviewer
themself — the reviewer decided on something that is no longer there: nothing of the decision is
written (its effects run in a SAVEPOINT that is rolled back), the decision becomes `conflict`, a
`conflict` audit row says who changed what, and the item goes back to `open` (version + 1) so it
is decided again on the case as it is now. A case the reviewer did not see (another queue's, or
one a pipeline run opened since) is changed under the version read in this transaction, with
the row locked, and only where the pipeline would change it (message, intent, more urgent
priority): a person's fields (status, assignee, notes) are left alone.

Concurrency and idempotency. Each decision is claimed by locking its row while it is `pending`
(`SELECT ... FOR UPDATE` on PostgreSQL: a second run waits, then sees it settled and skips it as
`taken`; SQLite's write transactions are serial). Its status leaves `pending` in the same
transaction as its effects, so a re-run, a retried step or two concurrent runs apply nothing
twice. Outbox keys are unique (the e-mail's per message, the event's per decision).

Failures. A decision that cannot be applied as recorded (an intent the policy does not route, an
undeliverable customer id, an item that is not `decided`, an item whose message id belongs to
another message so it has no ledger row to attach e-mail to) becomes `failed` with the reason in
`result` and a `review_failed` audit row; nothing else is written and the item stays `decided`
(the one-live-decision index keeps it so: an admin looks, the review_actions check alerts). A
database error (server gone) is not a failure of the decision: it propagates, the transaction is
rolled back, the decision stays pending and the next run applies it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ai_assets.actions.delivery.transports import DEFAULT_RECIPIENT_DOMAIN, customer_address
from ai_assets.actions.routing_policy import Route, RoutingPolicy, Template
from ai_assets.actions.triage import email_key, event_key, topic
from ai_assets.ops_db.audit import AuditContext, AuditEvent, add_entry
from ai_assets.ops_db.cases import PIPELINE_ACTOR_PREFIX
from ai_assets.ops_db.tables import (
    Action,
    ActionOutcome,
    Case,
    CaseHistory,
    CaseStatus,
    Compensation,
    DecisionKind,
    DecisionStatus,
    OutboxKind,
    OutboxMessage,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
)
from ai_assets.ops_db.types import utcnow

if TYPE_CHECKING:
    from ai_assets.ops_db import OpsDb

# Audit events of this module (the audit log's event column is free text; AuditEvent has the
# pipeline's). `conflict` and `action` are the pipeline's own, used with the same meaning.
REVIEW_APPLIED = AuditEvent.REVIEW_APPLIED
REVIEW_FAILED = AuditEvent.REVIEW_FAILED
TAKEN = "taken"  # not a decision status: found settled by a concurrent run when this one got to it
OUTCOMES = (DecisionStatus.APPLIED.value, DecisionStatus.CONFLICT.value, DecisionStatus.FAILED.value, TAKEN)

REVIEWED_EVENT = "case.reviewed"
OVERRIDDEN_EVENT = "case.overridden"
ITEM_KINDS = frozenset({DecisionKind.APPROVE, DecisionKind.CORRECT, DecisionKind.REJECT_SPAM,
                        DecisionKind.REJECT_OUT_OF_SCOPE})
ACTING_KINDS = frozenset({DecisionKind.APPROVE, DecisionKind.CORRECT})


def decision_event_key(decision_id: int) -> str:
    """The webhook event of one decision: one per decision, ever."""
    return event_key(f"review-decision:{decision_id}")


def correction_email_key(action_id: int) -> str:
    """The correction e-mail of an overridden automatic action: one per action, ever (a second
    override of the same action, after a conflict, finds it and writes none)."""
    return email_key(f"correction:action:{action_id}")


@dataclass(frozen=True)
class DecisionOutcome:
    """What applying one decision did. `outcome`: applied | conflict | failed | taken."""

    decision_id: int
    kind: str
    outcome: str
    case_id: int | None = None
    case_version: int | None = None
    outbox_keys: tuple[str, ...] = ()
    detail: str | None = None  # the conflict or failure, in words (no message text)
    ms: float = 0.0


@dataclass(frozen=True)
class ApplyReport:
    """One `apply_pending` call. `pending_in` counts the decisions this call claimed while they
    were pending; each ends applied, conflict or failed, so the three add up to it. `taken`
    (listed, but settled by a concurrent run first) is outside that balance."""

    results: tuple[DecisionOutcome, ...] = ()
    duration_ms: float = 0.0

    def _count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def pending_in(self) -> int:
        return len(self.results) - self.taken

    @property
    def applied(self) -> int:
        return self._count(DecisionStatus.APPLIED.value)

    @property
    def conflicts(self) -> int:
        return self._count(DecisionStatus.CONFLICT.value)

    @property
    def failed(self) -> int:
        return self._count(DecisionStatus.FAILED.value)

    @property
    def taken(self) -> int:
        return self._count(TAKEN)

    @property
    def balanced(self) -> bool:
        return self.pending_in == self.applied + self.conflicts + self.failed

    @property
    def by_kind(self) -> dict[str, dict[str, int]]:
        counts: dict[str, Counter[str]] = {}
        for r in self.results:
            counts.setdefault(r.kind, Counter())[r.outcome] += 1
        return {kind: {o: c[o] for o in OUTCOMES if c[o]} for kind, c in sorted(counts.items())}

    @property
    def slowest_ms(self) -> float:
        return max((r.ms for r in self.results), default=0.0)

    def summary(self) -> dict[str, Any]:
        """Plain counts for run metadata and logs."""
        return {"pending_in": self.pending_in, "applied": self.applied, "conflicts": self.conflicts,
                "failed": self.failed, "taken_by_another_run": self.taken, "by_kind": self.by_kind,
                "duration_ms": round(self.duration_ms, 1), "slowest_decision_ms": round(self.slowest_ms, 1)}


class _Conflict(Exception):
    """The case changed after the reviewer read it: nothing of the decision is written."""

    def __init__(self, why: str, **detail: Any):
        super().__init__(why)
        self.why = why
        self.detail = detail


class _Refused(Exception):
    """The decision cannot be applied as recorded: it fails, nothing is written."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


@dataclass
class _Effects:
    message_id: str
    case_id: int | None = None
    case_version: int | None = None
    outbox_keys: list[str] = field(default_factory=list)
    email_written: bool | None = None  # None: the kind sends no e-mail


def apply_pending(db: OpsDb, policy: RoutingPolicy, ctx: AuditContext, *, limit: int | None = None,
                  recipient_domain: str = DEFAULT_RECIPIENT_DOMAIN) -> ApplyReport:
    """Apply the pending decisions, oldest first (at most `limit`), each in its own transaction.
    `ctx` is the applying run (actor, run id); audit rows of a decision carry its reviewer."""
    return DecisionApplier(db, policy, ctx, recipient_domain=recipient_domain).apply_pending(limit)


class DecisionApplier:
    """Applies decisions for one run (`ctx`); `recipient_domain` stands in for the CRM's contact
    lookup, as in the ActionLedger."""

    def __init__(self, db: OpsDb, policy: RoutingPolicy, ctx: AuditContext, *,
                 recipient_domain: str = DEFAULT_RECIPIENT_DOMAIN):
        self._sessions = db.sessions
        self._policy = policy
        self._ctx = ctx
        self._recipient_domain = recipient_domain

    def pending_ids(self, limit: int | None = None) -> list[int]:
        query = (select(ReviewDecision.id).where(ReviewDecision.status == DecisionStatus.PENDING.value)
                 .order_by(ReviewDecision.id))
        if limit is not None:
            query = query.limit(limit)
        with self._sessions.read() as s:
            return list(s.scalars(query))

    def apply_pending(self, limit: int | None = None) -> ApplyReport:
        started = time.perf_counter()
        results = [self.apply_one(decision_id) for decision_id in self.pending_ids(limit)]
        return ApplyReport(tuple(results), (time.perf_counter() - started) * 1000)

    def apply_one(self, decision_id: int) -> DecisionOutcome:
        """Claim the decision if it is still pending and settle it; `taken` if it is not."""
        started = time.perf_counter()
        outcome = self._settle(decision_id)
        return replace(outcome, ms=(time.perf_counter() - started) * 1000)

    # --- one decision, one transaction ----------------------------------------------------

    def _settle(self, decision_id: int) -> DecisionOutcome:
        with self._sessions.write() as s:
            d = s.execute(select(ReviewDecision).where(ReviewDecision.id == decision_id,
                                                       ReviewDecision.status == DecisionStatus.PENDING.value)
                          .with_for_update()).scalar_one_or_none()
            if d is None:
                kind = s.scalar(select(ReviewDecision.kind).where(ReviewDecision.id == decision_id))
                return DecisionOutcome(decision_id, kind or "unknown", TAKEN)
            for attempt in (1, 2):
                try:
                    with s.begin_nested():  # the effects, undone as one if they conflict or fail
                        effects = self._effects(s, d)
                    break
                except _Conflict as c:
                    return self._record_conflict(s, d, c)
                except _Refused as r:
                    return self._record_failed(s, d, r.why)
                except IntegrityError as exc:
                    # A pipeline run (or another decision) opened the customer's case in that queue
                    # after we looked (one open case per customer and queue), or wrote the message's
                    # e-mail: the effects are rolled back to the savepoint and run again, the
                    # decision still locked; each statement sees what committed meanwhile (READ
                    # COMMITTED). Refused a second time, the decision fails.
                    if attempt == 2:
                        return self._record_failed(s, d, "refused by the database twice: "
                                                         f"{type(exc.orig).__name__}")
            now = utcnow()
            result = {"case_id": effects.case_id, "case_version": effects.case_version,
                      "outbox_keys": effects.outbox_keys, "email_written": effects.email_written}
            s.execute(update(ReviewDecision).where(ReviewDecision.id == d.id).values(
                status=DecisionStatus.APPLIED.value, applied_at=now, applied_run_id=self._ctx.run_id, result=result))
            add_entry(s, self._as_reviewer(d), REVIEW_APPLIED, message_id=effects.message_id,
                      policy_version=self._policy.version, model_version=d.model_version, decision_id=d.id,
                      kind=d.kind, review_item_id=d.review_item_id, overridden_action_id=d.action_id,
                      model_intent=d.model_intent, model_confidence=d.model_confidence, intent=d.intent,
                      corrected=d.intent != d.model_intent, compensation=d.compensation,
                      reviewer_role=d.reviewer_role, decided_at=d.decided_at.isoformat(),
                      case_id=effects.case_id, case_version=effects.case_version, applied_by=self._ctx.actor)
            return DecisionOutcome(d.id, d.kind, DecisionStatus.APPLIED.value, effects.case_id,
                                   effects.case_version, tuple(effects.outbox_keys))

    def _effects(self, s: Session, d: ReviewDecision) -> _Effects:
        if d.kind == DecisionKind.OVERRIDE:
            return self._override(s, d)
        if d.kind not in ITEM_KINDS:
            raise _Refused(f"unknown decision kind {d.kind!r}")
        if d.review_item_id is None:
            raise _Refused(f"a {d.kind} decision names no review item")
        item = s.execute(select(ReviewItem).where(ReviewItem.id == d.review_item_id)
                         .with_for_update()).scalar_one_or_none()
        if item is None:
            raise _Refused(f"review item {d.review_item_id} does not exist")
        if item.status != ReviewStatus.DECIDED.value:
            raise _Refused(f"review item {item.id} is {item.status}, not decided")
        # The ledger row that sent the message to review: the outbox rows hang on it.
        ledger_id = s.scalar(select(Action.id).where(Action.idempotency_key == item.idempotency_key))
        effects = _Effects(item.message_id)
        if d.kind in ACTING_KINDS:
            if ledger_id is None:
                raise _Refused(f"review item {item.id} has no ledger row (its message id is held by another "
                               "message): act on it by hand")
            self._act_on_item(s, d, item, ledger_id, effects)
        self._resolve_item(s, d, item)
        return effects

    # --- approve / correct ----------------------------------------------------------------

    def _act_on_item(self, s: Session, d: ReviewDecision, item: ReviewItem, action_id: int,
                     effects: _Effects) -> None:
        intent = self._intent(d)
        route = self._route(intent)
        address = self._address(item.customer_id)
        actor = d.reviewer
        self._check_seen_case(s, d, queue=route.queue)
        current = s.execute(select(Case).where(Case.customer_id == item.customer_id, Case.queue == route.queue,
                                               Case.status != CaseStatus.CLOSED.value)
                            .with_for_update()).scalar_one_or_none()
        now = utcnow()
        if current is None:
            case = Case(customer_id=item.customer_id, queue=route.queue, priority=route.priority, intent=intent,
                        message_count=1, last_message_id=item.message_id, version=1, opened_at=now,
                        updated_at=now, updated_by=actor)
            s.add(case)
            s.flush()
            case_id, version = case.id, 1
            change: dict[str, Any] = {"opened": True, "queue": route.queue, "priority": route.priority,
                                      "intent": intent}
        else:
            case_id, version = current.id, current.version + 1
            priority = min(current.priority, route.priority)  # "P1" < "P2": the more urgent wins
            known = s.scalar(select(exists().where(CaseHistory.case_id == case_id,
                                                   CaseHistory.message_id == item.message_id)))
            self._write_case(s, case_id, current.version, actor, now,
                             message_count=Case.message_count + (0 if known else 1),
                             last_message_id=item.message_id, intent=intent, priority=priority)
            change = {"message_added": item.message_id, "intent": intent, "priority": priority}
        s.add(CaseHistory(case_id=case_id, version=version, actor=actor, message_id=item.message_id, at=now,
                          change={**change, "review_decision": d.id, "kind": d.kind, "model_intent": d.model_intent}))
        template = self._policy.acknowledgement if intent in self._policy.never_automate \
            else self._policy.templates[route.action]
        effects.case_id, effects.case_version = case_id, version
        effects.email_written = self._email(s, email_key(item.message_id), action_id, item.message_id,
                                            address, template, case_id, intent, route.queue,
                                            route.priority, effects)
        self._event(s, d, action_id, item.message_id, effects, REVIEWED_EVENT, {
            "case_id": case_id, "message_id": item.message_id, "customer_id": item.customer_id,
            "queue": route.queue, "priority": route.priority, "intent": intent, "model_intent": d.model_intent,
            "action": route.action, "kind": d.kind, "decision_id": d.id, "reviewer_made": True,
            "needs_person": intent in self._policy.never_automate, "policy_version": self._policy.version})
        add_entry(s, self._as_reviewer(d), AuditEvent.ACTION, message_id=item.message_id,
                  policy_version=self._policy.version, model_version=d.model_version, action=route.action,
                  decision=d.kind, decision_id=d.id, case_id=case_id, case_version=version,
                  webhook_event=REVIEWED_EVENT, model_intent=d.model_intent, intent=intent,
                  email_written=effects.email_written)

    # --- override -------------------------------------------------------------------------

    def _override(self, s: Session, d: ReviewDecision) -> _Effects:
        if d.action_id is None:
            raise _Refused("an override names no automatic action")
        action = s.get(Action, d.action_id)
        if action is None:
            raise _Refused(f"action {d.action_id} does not exist")
        if action.outcome != ActionOutcome.ACTED.value or action.case_id is None:
            raise _Refused(f"action {action.id} was not acted on ({action.outcome}): nothing to override")
        if d.case_id is not None and d.case_id != action.case_id:
            raise _Refused(f"the decision names case {d.case_id}, the action acted on case {action.case_id}")
        try:
            compensation = Compensation(d.compensation)
        except ValueError:
            raise _Refused(f"unknown compensation {d.compensation!r}") from None
        intent = self._intent(d)
        route = self._route(intent)
        # The reviewer saw the action's case (`case_id` is it, or not given): it is the one checked.
        case = self._check_seen_case(s, d, case_id=action.case_id)
        assert case is not None  # the action's case exists (foreign key)
        address = self._address(case.customer_id) if compensation == Compensation.FOLLOWUP_EMAIL else ""
        effects = _Effects(action.message_id)
        changes: dict[str, Any] = {"intent": intent}
        if compensation == Compensation.REOPEN_CASE and case.status == CaseStatus.CLOSED.value:
            self._no_other_open_case(s, case, case.queue, "reopening")
            changes["status"] = CaseStatus.OPEN.value
        elif compensation == Compensation.REQUEUE:
            if route.queue != case.queue:
                self._no_other_open_case(s, case, route.queue, "moving")
            changes.update(queue=route.queue, priority=route.priority)
            if case.status == CaseStatus.CLOSED.value:
                changes["status"] = CaseStatus.OPEN.value
        before = {name: getattr(case, name) for name in changes}
        # Read before the UPDATE: an ORM-enabled UPDATE synchronises the loaded object.
        case_id, read_version, customer_id = case.id, case.version, case.customer_id
        queue, priority = changes.get("queue", case.queue), changes.get("priority", case.priority)
        now = utcnow()
        self._write_case(s, case_id, read_version, d.reviewer, now, **changes)
        version = read_version + 1
        s.add(CaseHistory(case_id=case_id, version=version, actor=d.reviewer, message_id=action.message_id, at=now,
                          change={**changes, "previous": before, "review_decision": d.id, "kind": d.kind,
                                  "compensation": compensation.value, "model_intent": d.model_intent,
                                  "overridden_action_id": action.id}))
        effects.case_id, effects.case_version = case_id, version
        if compensation == Compensation.FOLLOWUP_EMAIL:
            effects.email_written = self._email(s, correction_email_key(action.id), action.id, action.message_id,
                                                address, self._policy.correction_template,
                                                case_id, intent, queue, priority, effects)
        self._event(s, d, action.id, action.message_id, effects, OVERRIDDEN_EVENT, {
            "case_id": case_id, "message_id": action.message_id, "customer_id": customer_id,
            "queue": queue, "priority": priority, "intent": intent, "model_intent": d.model_intent,
            "compensation": compensation.value, "overridden_action_id": action.id,
            "overridden_action": action.action, "decision_id": d.id, "reviewer_made": True,
            "policy_version": self._policy.version})
        add_entry(s, self._as_reviewer(d), AuditEvent.ACTION, message_id=action.message_id,
                  policy_version=self._policy.version, model_version=d.model_version,
                  action=f"override:{compensation.value}", decision=d.kind, decision_id=d.id, case_id=case_id,
                  case_version=version, webhook_event=OVERRIDDEN_EVENT, model_intent=d.model_intent, intent=intent,
                  overridden_action_id=action.id, overridden_action=action.action,
                  overridden_policy_version=action.policy_version, email_written=effects.email_written)
        return effects

    def _no_other_open_case(self, s: Session, case: Case, queue: str, doing: str) -> None:
        other = s.scalar(select(Case.id).where(Case.customer_id == case.customer_id, Case.queue == queue,
                                               Case.status != CaseStatus.CLOSED.value, Case.id != case.id))
        if other is not None:
            raise _Conflict(f"the customer has open case {other} in queue {queue}: {doing} case {case.id} "
                            "would make two", case_id=case.id, other_case_id=other, queue=queue)

    # --- shared pieces --------------------------------------------------------------------

    def _check_seen_case(self, s: Session, d: ReviewDecision, *, queue: str | None = None,
                         case_id: int | None = None) -> Case | None:
        """Lock the case the reviewer saw and raise `_Conflict` if someone other than a pipeline
        run or the reviewer changed it since. With `queue`, only a seen case in that queue
        matters (a case in another queue is not touched by the decision)."""
        case_id = case_id if case_id is not None else d.case_id
        if case_id is None:
            return None
        if queue is not None and s.scalar(select(Case.queue).where(Case.id == case_id)) != queue:
            # Not locked: only cases the decision writes are, so two decisions crossing between
            # two queues of one customer never wait for each other's locks (no deadlock).
            return None
        case = s.execute(select(Case).where(Case.id == case_id).with_for_update()).scalar_one_or_none()
        if case is None:
            raise _Refused(f"case {case_id} does not exist")
        seen = d.case_version_seen
        if seen is None:
            raise _Refused(f"the decision names case {case_id} but not the version its reviewer saw")
        if case.version < seen:
            raise _Conflict(f"case {case_id} is at v{case.version}, older than the v{seen} the reviewer saw",
                            case_id=case_id, case_version_seen=seen, case_version_now=case.version)
        if case.version > seen:
            who = changed_by_others(s, case_id, seen, case.version, d.reviewer)
            if who is not None:
                raise _Conflict(f"case {case_id} changed by {who} after the reviewer read v{seen}; now "
                                f"v{case.version}", case_id=case_id, case_version_seen=seen,
                                case_version_now=case.version, changed_by=who)
        return case

    @staticmethod
    def _write_case(s: Session, case_id: int, expected_version: int, actor: str, now: datetime,
                    **values: Any) -> None:
        # The same rule as CaseStore.edit (UPDATE ... WHERE id AND version = expected, a history
        # row per version), written here because (1) it must be in this transaction with the
        # outbox and audit rows — CaseStore.edit commits its own — and (2) a review decision
        # changes fields CaseStore.edit keeps from people editing in the CRM (intent, queue,
        # message count): a reviewer's decision is the action path's, not a free-form edit.
        done = s.execute(update(Case).where(Case.id == case_id, Case.version == expected_version)
                         .values(**values, version=expected_version + 1, updated_at=now, updated_by=actor))
        if done.rowcount != 1:  # cannot happen under the row lock; refuse rather than overwrite
            raise _Conflict(f"case {case_id} changed during the update", case_id=case_id)

    def _email(self, s: Session, key: str, action_id: int, message_id: str, address: str,
               template: Template, case_id: int, intent: str, queue: str, priority: str, effects: _Effects) -> bool:
        """Write the e-mail unless its key is taken (then the customer already has it): written?"""
        if s.scalar(select(exists().where(OutboxMessage.idempotency_key == key))):
            return False
        subject, body = template.render(case_id=case_id, topic=topic(intent), queue=queue, priority=priority)
        s.add(OutboxMessage(idempotency_key=key, action_id=action_id, message_id=message_id, partition=None,
                            kind=OutboxKind.EMAIL.value, destination=address, subject=subject, payload={"body": body}))
        effects.outbox_keys.append(key)
        return True

    def _event(self, s: Session, d: ReviewDecision, action_id: int, message_id: str, effects: _Effects, event: str,
               payload: dict[str, Any]) -> None:
        key = decision_event_key(d.id)
        s.add(OutboxMessage(idempotency_key=key, action_id=action_id, message_id=message_id,
                            partition=None, kind=OutboxKind.WEBHOOK.value, destination=event,
                            payload={"event": event, **payload}))
        effects.outbox_keys.append(key)

    def _resolve_item(self, s: Session, d: ReviewDecision, item: ReviewItem) -> None:
        now = utcnow()
        done = s.execute(update(ReviewItem).where(ReviewItem.id == item.id,
                                                  ReviewItem.status == ReviewStatus.DECIDED.value).values(
            status=ReviewStatus.RESOLVED.value, resolved_at=now, resolved_by=d.reviewer,
            resolution={"decision_id": d.id, "kind": d.kind, "intent": d.intent}, version=ReviewItem.version + 1))
        if done.rowcount != 1:  # the item is locked and was decided: cannot happen
            raise _Refused(f"review item {item.id} changed while its decision was applied")

    def _intent(self, d: ReviewDecision) -> str:
        if not d.intent:
            raise _Refused(f"a {d.kind} decision names no intent")
        return d.intent

    def _route(self, intent: str) -> Route:
        route = self._policy.routes.get(intent)
        if route is None:
            raise _Refused(f"policy {self._policy.version} does not route intent {intent!r}")
        return route

    def _address(self, customer_id: str) -> str:
        try:
            return customer_address(customer_id, self._recipient_domain)
        except ValueError:
            raise _Refused("the customer id is not a deliverable address") from None

    def _as_reviewer(self, d: ReviewDecision) -> AuditContext:
        # No partition: the applying run is not a day's, and its rows are not that day's work.
        return AuditContext(d.reviewer, self._ctx.run_id, None)

    # --- conflict and failure -------------------------------------------------------------

    def _record_conflict(self, s: Session, d: ReviewDecision, c: _Conflict) -> DecisionOutcome:
        s.execute(update(ReviewDecision).where(ReviewDecision.id == d.id).values(
            status=DecisionStatus.CONFLICT.value, applied_run_id=self._ctx.run_id,
            result={"conflict": c.why, **c.detail, "settled_at": utcnow().isoformat()}))
        if d.review_item_id is not None:  # decided again, on the case as it is now
            s.execute(update(ReviewItem).where(ReviewItem.id == d.review_item_id,
                                               ReviewItem.status == ReviewStatus.DECIDED.value)
                      .values(status=ReviewStatus.OPEN.value, version=ReviewItem.version + 1))
        add_entry(s, self._as_reviewer(d), AuditEvent.CONFLICT, message_id=d.message_id,
                  policy_version=self._policy.version, model_version=d.model_version, decision_id=d.id, kind=d.kind,
                  review_item_id=d.review_item_id, overridden_action_id=d.action_id, detail=c.why,
                  model_intent=d.model_intent, intent=d.intent, applied_by=self._ctx.actor, **c.detail)
        return DecisionOutcome(d.id, d.kind, DecisionStatus.CONFLICT.value, c.detail.get("case_id"), detail=c.why)

    def _record_failed(self, s: Session, d: ReviewDecision, why: str) -> DecisionOutcome:
        s.execute(update(ReviewDecision).where(ReviewDecision.id == d.id).values(
            status=DecisionStatus.FAILED.value, applied_run_id=self._ctx.run_id,
            result={"error": why, "settled_at": utcnow().isoformat()}))
        add_entry(s, self._as_reviewer(d), REVIEW_FAILED, message_id=d.message_id,
                  policy_version=self._policy.version, decision_id=d.id, kind=d.kind,
                  review_item_id=d.review_item_id, overridden_action_id=d.action_id, error=why,
                  applied_by=self._ctx.actor)
        return DecisionOutcome(d.id, d.kind, DecisionStatus.FAILED.value, detail=why)


def changed_by_others(s: Session, case_id: int, after_version: int, current_version: int,
                      reviewer: str) -> str | None:
    """Who, other than a pipeline run or `reviewer`, changed the case after `after_version`;
    None when nobody else did. Fails closed: a version bump without its history row (a CRM or a
    hand-written UPDATE) counts as someone else's change. The reviewer's own changes (an earlier
    decision of theirs on the same case, applied first) are theirs to build on."""
    actors = list(s.scalars(select(CaseHistory.actor).where(CaseHistory.case_id == case_id,
                                                            CaseHistory.version > after_version)
                            .order_by(CaseHistory.version)))
    if len(actors) != current_version - after_version:
        return "a writer that left no case history"
    return next((a for a in actors if not a.startswith(PIPELINE_ACTOR_PREFIX) and a != reviewer), None)


__all__ = ["ApplyReport", "DecisionApplier", "DecisionOutcome", "OVERRIDDEN_EVENT", "REVIEWED_EVENT",
           "REVIEW_APPLIED", "REVIEW_FAILED", "TAKEN", "apply_pending", "changed_by_others",
           "correction_email_key", "decision_event_key"]
