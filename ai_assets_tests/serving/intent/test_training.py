"""Training a candidate: the metrics the promotion gate judges it by."""

import pytest

from ai_assets.data.datasets import LabelledText, split_banking77
from ai_assets.serving.intent.out_of_scope import load_out_of_scope
from ai_assets.serving.intent.promotion import GateRules, gate_failures
from ai_assets.serving.intent.text_encoders import HashingEncoder
from ai_assets.serving.intent.training import first_per_intent, train_candidate, wilson_upper


def test_a_candidate_no_threshold_makes_precise_enough_is_refused_by_the_gate():
    split = split_banking77()
    # A tiny model (13 of the intents, 4 rows each): the gate's logic does not need all 77.
    intents = sorted({r.category for r in split["train"]})[::6]
    # Validation labels all shifted to another intent: every automated answer would be wrong,
    # so no confidence threshold reaches the target precision.
    shifted = {a: b for a, b in zip(intents, intents[1:] + intents[:1])}
    wrong = [LabelledText(r.text, shifted[r.category]) for r in split["validation"] if r.category in shifted]
    train = [r for r in split["train"] if r.category in shifted]
    candidate = train_candidate(first_per_intent(train, 4), wrong, load_out_of_scope("train"),
                                load_out_of_scope("heldout"), encoder=HashingEncoder())
    assert candidate.model.threshold == float("inf")
    assert candidate.metrics["threshold_finite"] is False
    lenient = GateRules(min_accuracy=0.0, min_coverage=0.0, max_out_of_scope_automated=1.0)
    assert gate_failures(candidate.metrics, None, lenient) == ["no confidence threshold reaches the target precision"]


@pytest.mark.slow
def test_the_out_of_scope_share_comes_with_its_uncertainty_and_a_second_estimate():
    split = split_banking77()
    oos_train, oos_heldout = load_out_of_scope("train"), load_out_of_scope("heldout")
    candidate = train_candidate(first_per_intent(split["train"], 8), split["validation"][:400], oos_train,
                                oos_heldout, encoder=HashingEncoder())
    m, model = candidate.metrics, candidate.model
    automated = round(m["out_of_scope_automated"] * len(oos_heldout))
    assert m["out_of_scope_automated_upper95"] == round(wilson_upper(automated, len(oos_heldout)), 6)
    assert m["out_of_scope_automated_upper95"] > m["out_of_scope_automated"]
    # Out-of-fold answers for every training out-of-scope message, judged at the same threshold.
    assert len(model.calibration_oos) == len(oos_train)
    expected = sum(c >= model.threshold for c in model.calibration_oos) / len(oos_train)
    assert m["out_of_scope_automated_training_oof"] == round(expected, 6)


def test_wilson_upper_bound():
    assert round(wilson_upper(0, 137), 4) == 0.0273  # none of 137 seen: still up to 2.7%
    assert round(wilson_upper(1, 137), 4) == 0.0402
    assert round(wilson_upper(50, 100), 4) == 0.5962
    assert wilson_upper(10, 10) == 1.0
    assert wilson_upper(0, 0) is None
