"""Training a candidate: the metrics the promotion gate judges it by."""

import math
import random

from ai_assets.core.dataset import LabelledText, split_banking77
from ai_assets.core.model_training import first_per_intent, train_candidate
from ai_assets.core.out_of_scope import load_out_of_scope
from ai_assets.core.promotion import GateRules, gate_failures
from ai_assets.core.text_encoders import HashingEncoder


def test_the_threshold_and_metrics_come_from_the_out_of_fold_answers(smoke_model):
    candidate = smoke_model.candidate
    model, metrics = candidate.model, candidate.metrics
    assert model.threshold_info["source"] == "oof" and metrics["threshold_source"] == "oof"
    assert model.threshold_info["folds"] == metrics["folds"] == model.info["folds"]
    automated = model.oof_confidence >= model.threshold
    assert math.isfinite(model.threshold) and metrics["threshold_finite"] is True
    assert metrics["coverage"] == round(float(automated.mean()), 6)
    assert metrics["automated_precision"] == round(float(model.oof_correct[automated].mean()), 6)
    assert metrics["automated_precision"] >= 0.98
    assert metrics["accuracy"] == round(model.info["oof_accuracy_in_scope"], 6)
    assert 0 <= metrics["macro_f1"] <= 1 and 0 <= metrics["ece"] <= 1
    # Trained on every row given: no held-back validation rows.
    assert metrics["n_train"] == len(model.oof_confidence) and "n_validation" not in metrics


def test_a_candidate_no_threshold_makes_precise_enough_is_refused_by_the_gate():
    split = split_banking77()
    rows = first_per_intent(split["train"], 4)
    intents = sorted({r.category for r in rows})
    # Labels drawn at random: the out-of-fold answers are right by chance only, so no
    # confidence threshold reaches the target precision.
    rng = random.Random(0)
    noise = [LabelledText(r.text, rng.choice(intents)) for r in rows]
    candidate = train_candidate(noise, load_out_of_scope("train"), load_out_of_scope("heldout"),
                                encoder=HashingEncoder())
    assert candidate.model.threshold == float("inf")
    assert candidate.metrics["threshold_finite"] is False
    assert candidate.metrics["coverage"] == 0.0 and candidate.metrics["automated_precision"] is None
    lenient = GateRules(min_accuracy=0.0, min_coverage=0.0, max_out_of_scope_automated=1.0)
    assert gate_failures(candidate.metrics, None, lenient) == ["no confidence threshold reaches the target precision"]
