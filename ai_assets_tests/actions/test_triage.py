"""Triage decisions and idempotency keys: pure, deterministic, and never acting on an unsure message."""

import pandas as pd
import pytest

from ai_assets.actions.routing_policy import load_policy
from ai_assets.actions.triage import (
    Decision,
    content_hash,
    email_key,
    event_key,
    idempotency_key,
    topic,
    triage,
    triage_frame,
)
from ai_assets.schemas import ENRICHED_COLUMNS, TRIAGE_COLUMNS

POLICY = load_policy()


@pytest.mark.parametrize("intent, automated, reason, expected", [
    ("card_arrival", True, None, (Decision.ACT, "auto_reply", None)),
    ("card_not_working", True, None, (Decision.ACT, "open_case", None)),
    ("lost_or_stolen_card", True, None, (Decision.ACT_AND_NOTIFY, "fraud_escalation",
                                         "never_automated: lost_or_stolen_card")),
    ("lost_or_stolen_card", False, "below_threshold: 0.4 < 0.8", (Decision.REVIEW, "review",
                                                                  "below_threshold: 0.4 < 0.8")),
    ("card_arrival", False, "label_named_in_text: card_arrival", (Decision.REVIEW, "review",
                                                                  "label_named_in_text: card_arrival")),
    ("out_of_scope", True, None, (Decision.REVIEW, "review", "out_of_scope")),
    ("needs_human", False, "needs_human: every tier failed", (Decision.REVIEW, "review",
                                                              "needs_human: every tier failed")),
    ("not_a_label_from_anywhere", True, None, (Decision.REVIEW, "review", "needs_human")),
])
def test_decisions(intent, automated, reason, expected):
    t = triage(intent, automated, reason, POLICY)
    assert (t.decision, t.action, t.reason) == expected
    assert t.queue and t.priority in ("P1", "P2", "P3")


def test_every_never_automated_intent_is_never_acted_on_alone():
    for intent in POLICY.never_automate:
        assert triage(intent, True, None, POLICY).decision != Decision.ACT


def test_keys_are_stable_and_separate_what_they_should():
    content = content_hash("c-1", "app", "where is my card")
    key = idempotency_key("m-1", "auto_reply", "v1", content)
    assert key == idempotency_key("m-1", "auto_reply", "v1", content) and len(key) == 64
    assert len({key, idempotency_key("m-1", "auto_reply", "v2", content),
                idempotency_key("m-1", "open_case", "v1", content), idempotency_key("m-2", "auto_reply", "v1", content),
                idempotency_key("m-1", "auto_reply", "v1", content_hash("c-2", "app", "where is my card"))}) == 5
    # No ambiguity from separators inside the parts.
    assert idempotency_key("a|b", "c", "d", content) != idempotency_key("a", "b|c", "d", content)
    assert content_hash("c-1", "app", "x") != content_hash("c-1", "chat", "x") != content_hash("c-1", "app", "y")
    assert email_key("m-1") != event_key(key) and email_key("m-1") == email_key("m-1")
    assert topic("reverted_card_payment?") == "reverted card payment"


def test_triage_frame_is_deterministic_and_one_row_per_message():
    rows = [{c: None for c in ENRICHED_COLUMNS} | {
        "message_id": f"m-{i}", "customer_id": "c", "text": "t", "intent": intent, "confidence": 0.9,
        "automated": automated, "review_reason": None if automated else "below_threshold", "tier": "local",
        "answered_by": "intent_model v1", "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
        "latency_ms": 1.0, "cache_hit": False}
        for i, (intent, automated) in enumerate([("card_arrival", True), ("compromised_card", True),
                                                 ("card_arrival", False)])]
    enriched = pd.DataFrame(rows, columns=list(ENRICHED_COLUMNS))
    first, second = triage_frame(enriched, POLICY), triage_frame(enriched, POLICY)
    assert list(first.columns) == list(TRIAGE_COLUMNS)
    assert first.to_csv() == second.to_csv()
    assert list(first["decision"]) == ["act", "act_and_notify", "review"]
    assert first["policy_version"].unique().tolist() == [POLICY.version]
