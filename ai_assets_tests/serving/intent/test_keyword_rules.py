"""Keyword rules: the last tier before a person must be precise when it speaks at all."""

from ai_assets.data.datasets import load_categories, split_banking77
from ai_assets.serving.intent.keyword_rules import RULE_CONFIDENCE, RULES, match_rule


def test_rules_name_only_real_intents():
    assert {intent for intent, _ in RULES} <= set(load_categories())


def test_rules_are_precise_on_held_out_messages():
    rows = split_banking77()["validation"]
    matched = [(match_rule(r.text), r.category) for r in rows]
    answered = [(m, c) for m, c in matched if m is not None]
    precision = sum(m == c for m, c in answered) / len(answered)
    assert precision >= 0.8, precision
    assert len(answered) >= 50  # they do answer something


def test_examples_and_non_matches():
    assert match_rule("Someone stole my card yesterday") == "lost_or_stolen_card"
    assert match_rule("I lost my phone with the app on it") == "lost_or_stolen_phone"
    assert match_rule("I was charged twice for one coffee") == "transaction_charged_twice"
    assert match_rule("What is the weather tomorrow?") is None


def test_rules_never_claim_enough_confidence_to_automate():
    assert RULE_CONFIDENCE <= 0.5
