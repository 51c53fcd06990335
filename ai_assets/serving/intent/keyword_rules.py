"""Keyword rules: the tier of last resort before a person, when no model can answer.

A handful of hand-written, high-precision patterns for the intents where a wrong silence
costs most (lost cards, fraud, missing money). They never claim certainty: their confidence
is fixed below any automation threshold, so a rule only routes a message to the right queue
for a person; everything no rule matches goes to a person unlabelled.
"""

from __future__ import annotations

import re

RULE_CONFIDENCE = 0.5

# Ordered: the first matching rule wins, so the more specific patterns come first.
_PATTERNS = (
    ("lost_or_stolen_phone", r"\b(lost|stolen|missing)\b.*\bphone\b|\bphone\b.*\b(lost|stolen)\b"),
    ("lost_or_stolen_card", r"\b(lost|stolen|stole)\b.*\bcard\b|\bcard\b.*\b(lost|stolen)\b"),
    ("card_payment_not_recognised",
     r"\b(don'?t|do not|didn'?t|did not)\s+recogni[sz]e\b.*\b(payment|charge|transaction)\b"),
    ("transaction_charged_twice", r"\b(charged|billed)\s+(twice|two times|double)\b|\bduplicate (charge|payment)\b"),
    ("pin_blocked", r"\bpin\b.*\b(blocked|locked)\b"),
    ("change_pin", r"\b(change|reset)\b.*\bpin\b"),
    ("card_swallowed", r"\b(atm|machine)\b.*\b(swallowed|ate|kept|took)\b.*\bcard\b"),
    ("card_arrival", r"\bcard\b.*\b(not|hasn'?t|still not|never)\b.*\b(arrived|come|received)\b"),
    ("terminate_account", r"\b(close|delete|terminate|cancel)\b.*\baccount\b"),
    ("apple_pay_or_google_pay", r"\b(apple|google)\s*pay\b"),
)
RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (intent, re.compile(pattern, re.IGNORECASE)) for intent, pattern in _PATTERNS)


def match_rule(text: str) -> str | None:
    """The intent of the first rule that matches, or None."""
    for intent, pattern in RULES:
        if pattern.search(text):
            return intent
    return None
