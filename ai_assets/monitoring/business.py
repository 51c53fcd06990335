"""`business_metrics` for one day: what the automation did for the bank.

Definitions (per message of the partition: a row of `triage_decisions` joined with its row of
`case_actions` by idempotency key; routing policy in `actions/routing_policy.yaml`, decisions
in `actions/triage.py`):
- automated: decision `act` and the ledger's outcome `acted` — handled with no person at all.
- escalated: decision `act_and_notify` and outcome `acted` — the case was opened and a person
  notified (intents in the policy's `never_automate`; `fraud_escalation` is reported within).
- to people: everything else — decision `review`, or an act turned into review when acting
  (`conflict` with a person's case edit, `id_conflict`, an undeliverable customer id).
  automated + escalated + to people = messages, always.
- override rate: of the review decisions passed in (`ReviewOutcome`), the share where the
  reviewer changed the pipeline's intent, queue or action. None until reviews exist.
- time from receipt to action: `received_at` to the action ledger's time of the message's first
  `acted` row (case write, e-mail and event are in that one transaction), and to the delivery
  of its customer e-mail. For a backfill this is the backfill's delay, not the service's.
- agent minutes saved: automated messages x `minutes_per_case` (`AI_ASSETS_MINUTES_PER_CASE`).
  Escalated messages save nothing here: a person still handles the case.
- errors caught before reaching a customer: quarantined input rows, plus messages held back for
  a person whose answer was wrong or unsafe to act on as it stood — out of scope, no tier could
  classify (`needs_human`), the LLM and the local model disagreeing, a label name written in
  the text (prompt-injection guard), a person's conflicting case edit, a reused message id, an
  undeliverable customer id. Messages held back only for low confidence (`below_threshold`,
  `keyword_rule_only`) are counted apart under `held_uncertain`: whether they were errors is
  what reviews will tell (the override rate). Dead letters (e-mails that failed delivery after
  the last attempt and wait for a person to requeue) are reported apart: a delivery failure,
  not a model error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from ai_assets.actions.ledger import ID_CONFLICT
from ai_assets.actions.triage import Decision
from ai_assets.monitoring.intervals import Proportion
from ai_assets.monitoring.metrics import Distribution, round_or_none
from ai_assets.ops_db.metrics_reads import ActionTime, OutboxTime
from ai_assets.ops_db.tables import ActionOutcome, OutboxKind, OutboxStatus

FRAUD_ESCALATION = "fraud_escalation"
CASE_CONFLICT, UNDELIVERABLE = "case_conflict", "undeliverable_customer_id"
# Reasons where acting as answered would have been wrong or unsafe (see the module docstring).
CAUGHT_REASONS = frozenset({"out_of_scope", "needs_human", "llm_local_disagree", "label_named_in_text",
                            CASE_CONFLICT, ID_CONFLICT, UNDELIVERABLE})
REVIEWS_MISSING = "not available yet: no review decisions recorded (the reviewers' app, layer 5)"


@dataclass(frozen=True)
class ReviewOutcome:
    """One reviewer's decision on a message: did they change the pipeline's answer?"""

    message_id: str
    overridden: bool  # the reviewer changed the intent, queue or action


@dataclass(frozen=True)
class BusinessMetrics:
    partition: str
    messages: int
    decisions: dict[str, int]  # triage's act / act_and_notify / review
    automated: Proportion
    escalated: Proportion
    to_people: Proportion
    fraud_escalations: int
    overrides: Proportion | None
    receipt_to_action_s: Distribution
    receipt_to_email_s: Distribution
    receipt_to_review_queue_s: Distribution
    minutes_per_case: float
    quarantined: int
    held_by_reason: dict[str, int]
    dead_letters: int
    negative_durations: int  # action or delivery recorded before receipt (clock skew): left out
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def agent_minutes_saved(self) -> float:
        return self.automated.k * self.minutes_per_case

    @property
    def errors_caught(self) -> int:
        return self.quarantined + sum(n for r, n in self.held_by_reason.items() if r in CAUGHT_REASONS)

    @property
    def held_uncertain(self) -> int:
        return sum(n for r, n in self.held_by_reason.items() if r not in CAUGHT_REASONS)

    def to_metadata(self) -> dict:
        return {
            "messages": self.messages,
            "automated": self.automated.k,
            "escalated": self.escalated.k,
            "to_people": self.to_people.k,
            "automation_rate": round_or_none(self.automated.value),
            "escalation_rate": round_or_none(self.escalated.value),
            "review_rate": round_or_none(self.to_people.value),
            "fraud_escalations": self.fraud_escalations,
            "override_rate": round_or_none(self.overrides.value) if self.overrides else None,
            "reviews": self.overrides.n if self.overrides else 0,
            "receipt_to_action_s_p50": round_or_none(self.receipt_to_action_s.p50, 3),
            "receipt_to_action_s_p95": round_or_none(self.receipt_to_action_s.p95, 3),
            "receipt_to_email_s_p50": round_or_none(self.receipt_to_email_s.p50, 3),
            "receipt_to_email_s_p95": round_or_none(self.receipt_to_email_s.p95, 3),
            "agent_minutes_saved": round(self.agent_minutes_saved, 3),
            "agent_hours_saved": round(self.agent_minutes_saved / 60, 3),
            "errors_caught_before_customer": self.errors_caught,
            "held_uncertain": self.held_uncertain,
            "quarantined": self.quarantined,
            "dead_letters": self.dead_letters,
            "partition": self.partition,
            "decisions": self.decisions,
            "rates": {"automated": self.automated.to_dict(), "escalated": self.escalated.to_dict(),
                      "to_people": self.to_people.to_dict(),
                      "override": self.overrides.to_dict() if self.overrides else None},
            "receipt_to_action_s": self.receipt_to_action_s.to_dict(),
            "receipt_to_email_s": self.receipt_to_email_s.to_dict(),
            "receipt_to_review_queue_s": self.receipt_to_review_queue_s.to_dict(),
            "held_by_reason": self.held_by_reason,
            "minutes_per_case": self.minutes_per_case,
            "negative_durations_left_out": self.negative_durations,
            "unavailable": self.unavailable,
        }


def _reason_code(reason: Any) -> str:
    return reason.split(":")[0].strip() if isinstance(reason, str) and reason else "not_automated"


def _held_reason(decision: str, outcome: str, reason: Any) -> str:
    if outcome == ActionOutcome.CONFLICT.value:
        return CASE_CONFLICT
    if outcome == ID_CONFLICT:
        return ID_CONFLICT
    if decision != Decision.REVIEW.value:  # an act the ledger sent to review: the customer id (ledger._act)
        return UNDELIVERABLE
    return _reason_code(reason)


def _first_times(rows: Sequence[tuple[str, datetime]]) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for message_id, at in rows:
        if message_id not in first or at < first[message_id]:
            first[message_id] = at
    return first


def business_metrics(partition: str, triage: pd.DataFrame, actions: pd.DataFrame, received: pd.DataFrame,
                     action_times: Sequence[ActionTime], outbox: Sequence[OutboxTime], *, quarantined: int,
                     minutes_per_case: float, reviews: Sequence[ReviewOutcome] | None = None) -> BusinessMetrics:
    """The day's business figures. `triage`, `actions`: the partition's `triage_decisions` and
    `case_actions` frames; `received`: a frame with `message_id` and `received_at` (validated or
    enriched messages); `action_times`, `outbox`: `MetricsReads.action_times / outbox_times` of
    the partition; `quarantined`: rows of `quarantined_messages`; `reviews`: review decisions on
    the partition's messages once the review app records them (None: not available yet)."""
    if minutes_per_case < 0:
        raise ValueError(f"minutes_per_case cannot be negative, got {minutes_per_case}")
    outcome_of = dict(zip(actions["idempotency_key"], actions["outcome"], strict=True)) if len(actions) else {}
    rows = triage.to_dict("records") if len(triage) else []
    keys = [r["idempotency_key"] for r in rows]
    if set(keys) != set(outcome_of):
        raise ValueError(f"triage_decisions and case_actions of {partition} disagree: "
                         f"{len(set(keys) - set(outcome_of))} decisions without an action row, "
                         f"{len(set(outcome_of) - set(keys))} action rows without a decision")
    n = len(rows)
    automated = escalated = fraud = 0
    held: Counter[str] = Counter()
    for r in rows:
        outcome = outcome_of[r["idempotency_key"]]
        if outcome == ActionOutcome.ACTED.value and r["decision"] == Decision.ACT.value:
            automated += 1
        elif outcome == ActionOutcome.ACTED.value and r["decision"] == Decision.ACT_AND_NOTIFY.value:
            escalated += 1
            fraud += r["action"] == FRAUD_ESCALATION
        else:
            held[_held_reason(r["decision"], outcome, r.get("reason"))] += 1
    to_people = sum(held.values())
    if automated + escalated + to_people != n:  # every message is in exactly one category
        raise RuntimeError(f"categories do not add up: {automated} + {escalated} + {to_people} != {n}")

    unavailable: dict[str, str] = {}
    if n == 0:
        unavailable["rates"] = "no messages in the partition"
    overrides = None
    if reviews is None:
        unavailable["override_rate"] = REVIEWS_MISSING
    else:
        overrides = Proportion(sum(r.overridden for r in reviews), len(reviews))

    received_at: dict[str, datetime] = {}
    if len(received):
        times = pd.to_datetime(received["received_at"], utc=True)
        for message_id, ts in zip(received["message_id"], times, strict=True):
            received_at.setdefault(str(message_id), ts.to_pydatetime())
    acted = _first_times([(a.message_id, a.at) for a in action_times if a.outcome == ActionOutcome.ACTED.value])
    queued = _first_times([(a.message_id, a.at) for a in action_times if a.outcome != ActionOutcome.ACTED.value])
    mailed = _first_times([(o.message_id, o.delivered_at) for o in outbox if o.kind == OutboxKind.EMAIL.value
                           and o.status == OutboxStatus.DELIVERED.value and o.delivered_at is not None])
    negative = 0

    def since_receipt(done: dict[str, datetime]) -> list[float]:
        nonlocal negative
        out = []
        for message_id, at in sorted(done.items()):
            if message_id in received_at:
                seconds = (at - received_at[message_id]).total_seconds()
                if seconds < 0:
                    negative += 1
                else:
                    out.append(seconds)
        return out

    to_action, to_email, to_queue = since_receipt(acted), since_receipt(mailed), since_receipt(queued)
    if not to_action:
        unavailable["receipt_to_action"] = "no acted message of the partition with a receipt time"
    return BusinessMetrics(
        partition=partition, messages=n, decisions=dict(sorted(Counter(r["decision"] for r in rows).items())),
        automated=Proportion(automated, n), escalated=Proportion(escalated, n), to_people=Proportion(to_people, n),
        fraud_escalations=fraud, overrides=overrides, receipt_to_action_s=Distribution.of(to_action),
        receipt_to_email_s=Distribution.of(to_email), receipt_to_review_queue_s=Distribution.of(to_queue),
        minutes_per_case=float(minutes_per_case), quarantined=int(quarantined),
        held_by_reason=dict(sorted(held.items())),
        dead_letters=sum(o.status == OutboxStatus.DEAD.value for o in outbox),
        negative_durations=negative, unavailable=dict(sorted(unavailable.items())),
    )


__all__ = ["BusinessMetrics", "CAUGHT_REASONS", "ReviewOutcome", "business_metrics"]
