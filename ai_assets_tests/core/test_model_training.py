"""Training a candidate: the metrics the promotion gate judges it by."""

from ai_assets.core.dataset import LabelledText, split_banking77
from ai_assets.core.model_training import first_per_intent, train_candidate
from ai_assets.core.out_of_scope import load_out_of_scope
from ai_assets.core.promotion import GateRules, gate_failures
from ai_assets.core.text_encoders import HashingEncoder


def test_a_candidate_no_threshold_makes_precise_enough_is_refused_by_the_gate():
    split = split_banking77()
    intents = sorted({r.category for r in split["train"]})
    # Validation labels all shifted to another intent: every automated answer would be wrong,
    # so no confidence threshold reaches the target precision.
    shifted = {a: b for a, b in zip(intents, intents[1:] + intents[:1])}
    wrong = [LabelledText(r.text, shifted[r.category]) for r in split["validation"][:300]]
    candidate = train_candidate(first_per_intent(split["train"], 4), wrong, load_out_of_scope("train"),
                                load_out_of_scope("heldout"), encoder=HashingEncoder())
    assert candidate.model.threshold == float("inf")
    assert candidate.metrics["threshold_finite"] is False
    lenient = GateRules(min_accuracy=0.0, min_coverage=0.0, max_out_of_scope_automated=1.0)
    assert gate_failures(candidate.metrics, None, lenient) == ["no confidence threshold reaches the target precision"]
