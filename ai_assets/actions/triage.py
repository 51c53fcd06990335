"""Triage: what the pipeline does with each enriched message — act, act and notify a person,
or send it to review — and the idempotency key that makes doing it twice impossible.

Pure functions of the enriched row and the routing policy. The confidence was already
compared with the production model's stored threshold when the message was enriched
(`automated`, `review_reason`, see `serving/intent/automation.py`); triage adds the policy: intents
that are never automated, and out-of-scope or unanswerable messages. Conflicts with a
person's edit of the case are found when acting (`actions/ledger.py`) and also end in review.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from ai_assets.actions.routing_policy import RoutingPolicy
from ai_assets.data.datasets import intent_words
from ai_assets.schemas import TRIAGE_COLUMNS
from ai_assets.serving.intent.automation import NEEDS_HUMAN
from ai_assets.serving.llm.prompt import OUT_OF_SCOPE


class Decision(StrEnum):
    ACT = "act"                        # the policy's action, customer e-mail included
    ACT_AND_NOTIFY = "act_and_notify"  # case opened and a person notified; the customer is only acknowledged
    REVIEW = "review"                  # a person decides; nothing is sent


REVIEW_ACTION = "review"  # the action name of a review decision, part of its idempotency key


@dataclass(frozen=True)
class Triage:
    decision: Decision
    action: str  # a policy action (auto_reply, open_case, fraud_escalation) or "review"
    reason: str | None  # why not fully automatic; None for ACT
    queue: str
    priority: str


def triage(intent: str, automated: bool, review_reason: str | None, policy: RoutingPolicy) -> Triage:
    """The decision for one enriched message under `policy`."""
    if intent == NEEDS_HUMAN or intent not in policy.routes:
        route = policy.route(OUT_OF_SCOPE)
        return Triage(Decision.REVIEW, REVIEW_ACTION, review_reason or NEEDS_HUMAN, route.queue, route.priority)
    route = policy.route(intent)
    if intent == OUT_OF_SCOPE:
        return Triage(Decision.REVIEW, REVIEW_ACTION, review_reason or OUT_OF_SCOPE, route.queue, route.priority)
    if not automated:
        return Triage(Decision.REVIEW, REVIEW_ACTION, review_reason or "not_automated", route.queue,
                      route.priority)
    if intent in policy.never_automate:
        return Triage(Decision.ACT_AND_NOTIFY, route.action, f"never_automated: {intent}", route.queue,
                      route.priority)
    return Triage(Decision.ACT, route.action, None, route.queue, route.priority)


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=True).encode()).hexdigest()


def content_hash(customer_id: str, channel: str, text: str) -> str:
    """What makes two messages with one id the same message: the same customer, channel and
    (validated) text. Ids are not unique across days in real feeds; the same id with the same
    content is a re-delivery, the same id with other content is a different message."""
    return _digest("content", customer_id, channel, text)


def idempotency_key(message_id: str, action: str, policy_version: str, content: str) -> str:
    """sha256 of (message id, action, policy version, content hash): the key of one action."""
    return _digest("action", message_id, action, policy_version, content)


def email_key(message_id: str) -> str:
    """One e-mail per customer message, ever: a policy change that acts on a message again
    must not write to the customer twice."""
    return _digest("email", message_id)


def event_key(action_key: str) -> str:
    """One webhook event per action."""
    return _digest("event", action_key)


def topic(intent: str) -> str:
    """The words a customer e-mail uses for an intent: `card_arrival` -> "card arrival"."""
    return intent_words(intent).lower()


def triage_frame(enriched: pd.DataFrame, policy: RoutingPolicy) -> pd.DataFrame:
    """`triage_decisions` from `enriched_messages`: one row per message, TRIAGE_COLUMNS."""
    rows = []
    for row in enriched.itertuples(index=False):
        review_reason = row.review_reason if isinstance(row.review_reason, str) else None
        t = triage(row.intent, bool(row.automated), review_reason, policy)
        content = content_hash(row.customer_id, row.channel, row.text)
        rows.append({
            "message_id": row.message_id, "customer_id": row.customer_id, "intent": row.intent,
            "confidence": float(row.confidence), "decision": t.decision.value, "action": t.action,
            "reason": t.reason, "queue": t.queue, "priority": t.priority, "policy_version": policy.version,
            "idempotency_key": idempotency_key(row.message_id, t.action, policy.version, content),
            "content_hash": content, "text": row.text,
            "tier": row.tier, "answered_by": row.answered_by, "input_tokens": int(row.input_tokens),
            "output_tokens": int(row.output_tokens), "cost_usd": float(row.cost_usd),
            "latency_ms": float(row.latency_ms), "cache_hit": bool(row.cache_hit),
            # Partitions enriched before suggestions were recorded have none.
            "suggestions": getattr(row, "suggestions", "[]"),
        })
    return pd.DataFrame.from_records(rows, columns=list(TRIAGE_COLUMNS))
