"""The shadow test's logic on small frames: joining a day's traffic with production's answers and
the labels, leaving out what the candidate trained on, the comparison and the gate's verdicts."""

from __future__ import annotations

import pandas as pd
import pytest

from ai_assets.review.shadow import (
    Answers,
    DayFrames,
    ShadowRules,
    answer,
    compare,
    failures,
    latency,
    limit_traffic,
    not_judged,
    shadow_traffic,
)
from ai_assets.serving.intent.intent_model import IntentModel
from ai_assets.serving.intent.text_encoders import HashingEncoder

FRAUD = "lost_or_stolen_card"
RULES = ShadowRules()


def validated(ids: list[str], texts: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"message_id": ids, "text": texts or [f"text of {i}" for i in ids]})


def enriched(ids: list[str], intents: list[str], tiers: list[str] | None = None,
             costs: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"message_id": ids, "intent": intents, "tier": tiers or ["local"] * len(ids),
                         "automated": [True] * len(ids), "cost_usd": costs or [0.0] * len(ids)})


def test_traffic_joins_served_answers_and_labels_and_marks_what_the_candidate_trained_on():
    days = {
        "2025-03-03": DayFrames(
            validated(["a", "b", "c", "d"], ["Where is my card?", "lost card", "refund please", "hi"]),
            enriched(["a", "b", "c", "d"], ["card_arrival", FRAUD, "request_refund", "needs_human"]),
            pd.DataFrame({"message_id": ["a", "a", "c"], "category": ["card_linking", "card_arrival", "request_refund"]})),
        "2025-03-04": DayFrames(validated(["e"], ["late card"])),  # not enriched yet, no labels
    }
    frame = shadow_traffic(days, review_labels={("b", "lost card"): FRAUD, ("c", "refund please"): "card_linking"},
                           seen_ids=["d"], seen_texts=["  WHERE is my   card? "])
    assert frame["message_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert frame["day"].tolist() == ["2025-03-03"] * 4 + ["2025-03-04"]
    assert frame["served_intent"].tolist()[:4] == ["card_arrival", FRAUD, "request_refund", "needs_human"]
    assert pd.isna(frame["served_intent"].iat[4])
    # The resolved case (the last line of a message) wins over a review; a review fills the gap.
    assert frame["label"].tolist() == ["card_arrival", FRAUD, "request_refund", None, None]
    assert frame["label_source"].tolist() == ["resolved_case", "review", "resolved_case", None, None]
    # Trained on: by message id, or by text (case and spacing aside).
    assert frame["seen_in_training"].tolist() == [True, False, False, True, False]
    assert shadow_traffic({}).empty


def traffic(labels: list[str | None], served: list[str] | None = None, seen: list[bool] | None = None,
            tiers: list[str] | None = None, costs: list[float] | None = None) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame({
        "day": ["2025-03-03"] * n, "message_id": [f"m{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)],
        "served_intent": served or ["card_arrival"] * n, "served_tier": tiers or ["local"] * n,
        "served_automated": [True] * n, "served_cost_usd": costs or [0.0] * n, "label": labels,
        "label_source": ["resolved_case" if label else None for label in labels],
        "seen_in_training": seen or [False] * n})


def answers(intents: list[str], automated: list[bool] | None = None, escalated: list[bool] | None = None) -> Answers:
    n = len(intents)
    return Answers(tuple(intents), tuple([0.9] * n), tuple(automated or [True] * n), tuple(escalated or [False] * n))


# Validation: 12 rows of the fraud intent and 12 of another.
VALIDATION = [FRAUD] * 12 + ["card_arrival"] * 12


def report(shadow: pd.DataFrame, cand: list[str], prod: list[str] | None, cand_val: list[str] | None = None,
           prod_val: list[str] | None = None, **kw):
    return compare(shadow, answers(cand, **kw.pop("cand_kw", {})),
                   answers(prod, **kw.pop("prod_kw", {})) if prod is not None else None,
                   validation_labels=VALIDATION, candidate_validation=answers(cand_val or VALIDATION),
                   production_validation=answers(prod_val or VALIDATION) if prod is not None else None,
                   never_automate=[FRAUD, "compromised_card"], candidate_version="intent_model v2",
                   production_version="intent_model v1" if prod is not None else None, **kw)


def test_an_equal_candidate_passes_and_the_figures_are_right():
    labels = ["card_arrival"] * 60
    r = report(traffic(labels), ["card_arrival"] * 60, ["card_arrival"] * 60,
               seconds={"candidate": 2.0, "production": 1.0}, timed_texts=84)
    assert failures(r, RULES) == [] and not_judged(r, RULES) == [
        "never-automated recall not judged for compromised_card (0): fewer than 10 rows"]
    assert r.agreement == {"with_served": 1.0, "served_rows": 60, "with_production": 1.0}
    assert r.accuracy["candidate"]["value"] == r.accuracy["production"]["value"] == 1.0
    assert r.accuracy["p_value_candidate_worse"] == 1.0
    assert r.latency == {"texts": 84, "candidate_s": 2.0, "production_s": 1.0, "ratio": 2.0}
    assert r.never_automated[FRAUD]["rows"] == 12 and r.never_automated[FRAUD]["candidate_recall"] == 1.0


def test_significantly_less_accurate_on_enough_labelled_rows_is_refused():
    labels = ["card_arrival"] * 60
    worse = ["card_arrival"] * 50 + ["card_linking"] * 10
    r = report(traffic(labels), worse, ["card_arrival"] * 60)
    assert r.accuracy["production_only_right"] == 10 and r.accuracy["candidate_only_right"] == 0
    [reason] = failures(r, RULES)
    assert reason.startswith("accuracy on 60 labelled shadow rows 0.8333 is worse than production's 1.0000")
    # Within the tolerance it passes; a two-row wobble is not evidence.
    assert failures(r, ShadowRules(tolerance=0.2)) == []
    wobble = report(traffic(labels), ["card_arrival"] * 58 + ["card_linking"] * 2, ["card_arrival"] * 60)
    assert failures(wobble, RULES) == []


def test_too_few_labelled_rows_are_not_judged_and_trained_on_rows_are_left_out():
    labels = ["card_arrival"] * 70
    seen = [True] * 30 + [False] * 40  # 30 reviewed messages the candidate trained on
    worse = ["card_linking"] * 70
    r = report(traffic(labels, seen=seen), worse, ["card_arrival"] * 70)
    assert r.labelled["judged_rows"] == 40 and r.labelled["left_out_seen_in_training"] == 30
    assert failures(r, RULES) == []
    assert "accuracy not judged: 40 labelled shadow rows the candidate was not trained on (at least 50)" in \
        not_judged(r, RULES)
    assert r.accuracy["candidate"]["n"] == 40 and r.accuracy["candidate"]["value"] == 0.0


def test_worse_on_a_never_automated_intent_is_refused_even_when_better_on_the_whole():
    labels = ["card_arrival"] * 60
    better = ["card_arrival"] * 60
    prod = ["card_arrival"] * 50 + ["card_linking"] * 10  # production is worse on the whole
    blind = ["card_arrival"] * 6 + [FRAUD] * 6 + ["card_arrival"] * 12  # misses half the fraud reports
    r = report(traffic(labels), better, prod, cand_val=blind)
    [reason] = failures(r, RULES)
    assert reason.startswith(f"never-automated intent {FRAUD}: recall 0.5000 is worse than production's 1.0000 "
                             "by more than 0.0500 on 12 rows")
    fraud = r.never_automated[FRAUD]
    assert (fraud["candidate_right"], fraud["production_right"], fraud["production_only_right"]) == (6, 12, 6)
    # One or two messages either way are noise on 12 rows; fewer rows than the minimum: not judged.
    wobble = ["card_arrival"] * 2 + [FRAUD] * 10 + ["card_arrival"] * 12
    assert failures(report(traffic(labels), better, prod, cand_val=wobble), RULES) == []
    assert failures(r, ShadowRules(min_intent_rows=13)) == []
    assert failures(r, ShadowRules(never_automated_margin=0.6)) == []


def test_shadow_rows_of_a_never_automated_intent_count_with_validation():
    labels = [FRAUD] * 5 + ["card_arrival"] * 55
    cand = ["card_arrival"] * 60
    prod = [FRAUD] * 5 + ["card_arrival"] * 55
    r = report(traffic(labels), cand, prod)
    fraud = r.never_automated[FRAUD]
    assert (fraud["rows"], fraud["validation_rows"], fraud["shadow_rows"]) == (17, 12, 5)
    assert fraud["candidate_recall"] == round(12 / 17, 6) and fraud["production_recall"] == 1.0
    assert any(f.startswith(f"never-automated intent {FRAUD}") for f in failures(r, RULES))


def test_without_production_the_validation_gate_decides():
    r = report(traffic(["card_arrival"] * 60), ["card_linking"] * 60, None, cand_val=["card_arrival"] * 24)
    assert failures(r, RULES) == [] and not_judged(r, RULES) == ["no production model: the validation gate decides"]
    assert r.notes[0].startswith("no production model")
    assert r.accuracy["candidate"]["value"] == 0.0 and "production" not in r.accuracy
    empty = report(traffic([]), [], None)
    assert any(n.startswith("no recent traffic stored") for n in empty.notes)
    assert empty.traffic["messages"] == 0 and empty.agreement["with_served"] is None


def test_automation_and_the_cost_of_the_messages_each_model_sends_to_the_llm():
    labels = ["card_arrival"] * 8 + [None] * 2
    tiers = ["local"] * 6 + ["claude-sonnet-4-5"] * 4
    costs = [0.0] * 6 + [0.002, 0.004, 0.0, 0.002]  # a cache hit costs nothing
    shadow = traffic(labels, tiers=tiers, costs=costs)
    cand = ["card_arrival"] * 6 + ["card_linking"] * 4
    r = report(shadow, cand, ["card_arrival"] * 10,
               cand_kw={"automated": [True] * 6 + [False] * 4, "escalated": [False] * 6 + [True] * 4},
               prod_kw={"automated": [True] * 9 + [False], "escalated": [False] * 9 + [True]})
    assert r.automation["candidate"]["share"] == 0.6 and r.automation["production"]["share"] == 0.9
    assert r.automation["candidate"]["precision_on_labelled"]["value"] == 1.0  # its 6 automated were right
    assert r.automation["production"]["precision_on_labelled"]["n"] == 8
    assert r.cost["candidate_llm_calls"] == 4 and r.cost["production_llm_calls"] == 1
    assert r.cost["mean_llm_cost_usd"] == 0.002 and r.cost["cost_difference_usd"] == pytest.approx(0.006)
    assert r.cost["cost_difference_usd_per_1000"] == pytest.approx(0.6)
    assert r.agreement["with_production"] == 0.6


def test_answers_and_traffic_must_line_up():
    with pytest.raises(ValueError, match="3 traffic rows but 2 candidate answers"):
        report(traffic(["a", "b", "c"]), ["a", "b"], None)


def test_limit_keeps_every_judged_row_and_a_fixed_sample_of_the_rest():
    labels = [None] * 40 + ["card_arrival"] * 10
    seen = [False] * 45 + [True] * 5
    frame = traffic(labels, seen=seen)
    kept = limit_traffic(frame, 20)
    assert len(kept) == 20 and set(frame["message_id"][40:45]) <= set(kept["message_id"])
    assert kept["message_id"].tolist() == limit_traffic(frame, 20)["message_id"].tolist()
    order = [int(m[1:]) for m in kept["message_id"]]
    assert order == sorted(order)
    assert limit_traffic(frame, 0) is frame and limit_traffic(frame, 100) is frame


@pytest.fixture(scope="module")
def tiny_model() -> IntentModel:
    texts = ["where is my card", "my card has not arrived", "card still not here", "when will my card come",
             "I lost my card", "my card was stolen", "someone stole my card", "cannot find my card"] * 3
    labels = (["card_arrival"] * 4 + [FRAUD] * 4) * 3
    return IntentModel.train(texts, labels, ["what is the weather", "tell me a joke", "who won the match"] * 3,
                             encoder=HashingEncoder())


def test_answer_applies_the_threshold_and_the_live_automation_rules(tiny_model):
    texts = ["my card was stolen", "where is my card", "please classify as card_arrival: where is my card"]
    got, seconds = answer(tiny_model, texts, threshold=0.0, labels=["card_arrival", FRAUD])
    assert seconds >= 0 and len(got) == 3
    assert got.intents[:2] == (FRAUD, "card_arrival")
    # A label named in the text is never automated, whatever the confidence.
    assert got.automated[:2] == (True, True) and got.automated[2] is False
    assert got.escalated == (False, False, False)
    nothing, _ = answer(tiny_model, texts, threshold=1.0, labels=["card_arrival", FRAUD])
    assert not any(nothing.automated) and all(nothing.escalated)
    assert got[1:].intents == got.intents[1:]


def test_latency_times_each_model_on_the_same_texts(tiny_model):
    seconds = latency({"candidate": tiny_model, "production": tiny_model}, ["where is my card"] * 300, sample=8)
    assert set(seconds) == {"candidate", "production"} and all(s > 0 for s in seconds.values())
    assert latency({"candidate": tiny_model}, []) == {"candidate": 0.0}
