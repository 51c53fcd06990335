"""Training a candidate: the metrics the promotion gate judges it by."""

import pytest

from ai_assets.data.datasets import LabelledText, load_clinc_out_of_scope, split_banking77
from ai_assets.serving.intent.out_of_scope import load_out_of_scope
from ai_assets.serving.intent.promotion import GateRules, gate_failures
from ai_assets.serving.intent.text_encoders import HashingEncoder
from ai_assets.serving.intent.training import (
    first_per_intent,
    held_out_texts,
    out_of_scope_material,
    reviewed_material,
    train_candidate,
)


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
    lenient = GateRules(min_accuracy=0.0, min_coverage=0.0, max_out_of_scope_automated=1.0,
                        min_out_of_scope_heldout=0)
    assert gate_failures(candidate.metrics, None, lenient) == ["no confidence threshold reaches the target precision"]


@pytest.mark.slow
def test_the_out_of_scope_share_comes_with_its_interval_and_a_second_estimate():
    split = split_banking77()
    oos = out_of_scope_material(clinc_train_per_intent=8)
    candidate = train_candidate(first_per_intent(split["train"], 8), split["validation"][:400], oos.train,
                                oos.heldout, encoder=HashingEncoder(), oos_calibration=oos.calibration,
                                oos_reports=oos.reports)
    m, model = candidate.metrics, candidate.model
    # Judged on the CLINC gate share and heldout.txt: over a thousand messages, not 137.
    assert m["n_out_of_scope_heldout"] == len(oos.heldout) > 1000
    interval = m["out_of_scope_automated_interval"]
    automated = sum(p.automated for p in model.predict(oos.heldout))
    assert (interval["k"], interval["n"]) == (automated, len(oos.heldout))
    assert m["out_of_scope_automated"] == round(automated / len(oos.heldout), 6)
    assert interval["low"] <= m["out_of_scope_automated"] <= m["out_of_scope_automated_upper95"] <= interval["high"]
    # Out-of-fold answers for every training out-of-scope message, judged at the same threshold.
    assert len(model.calibration_oos) == len(oos.train)
    expected = sum(c >= model.threshold for c in model.calibration_oos) / len(oos.train)
    assert m["out_of_scope_automated_training_oof"] == round(expected, 6)
    # The never-seen CLINC domain and heldout2.txt are measured and shown.
    assert set(m["out_of_scope_automated_by_source"]) == {"never_seen_clinc_kitchen_and_dining", "heldout2"}
    assert m["out_of_scope_automated_by_source"]["heldout2"]["n"] == len(oos.reports["heldout2"])
    assert m["n_out_of_scope_calibration"] == len(oos.calibration) and m["guarantee"]["level"] == 0.975


def test_the_out_of_scope_material_keeps_its_parts_apart():
    oos = out_of_scope_material()
    never_seen = set(oos.reports["never_seen_clinc_kitchen_and_dining"])
    parts = [set(oos.train), set(oos.calibration), set(oos.heldout), never_seen]
    assert all(a.isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    # Kitchen and dining is never trained on, calibrated on or judged by the gate.
    clinc = {r.text: r.domain for r in load_clinc_out_of_scope()}
    assert {clinc[t] for t in never_seen} == {"kitchen_and_dining"}
    assert all(clinc.get(t) != "kitchen_and_dining" for t in oos.train + oos.calibration + oos.heldout)
    # CLINC rows that are BANKING77 requests are no out-of-scope material at all.
    used = set(oos.train) | set(oos.calibration) | set(oos.heldout) | never_seen
    assert "how long do wire transfers take" not in used
    assert not any(r.clinc_intent == "exchange_rate" and r.text in used for r in load_clinc_out_of_scope())
    # Only the training share shrinks in the small configuration; the same cut every time.
    small = out_of_scope_material(clinc_train_per_intent=5)
    assert set(small.train) < set(oos.train) and small.heldout == oos.heldout
    assert small.calibration == oos.calibration and out_of_scope_material() == oos


def test_reviewed_labels_join_the_training_material_only():
    split = split_banking77()
    validation_text = split["validation"][0].text
    rows = [("where is my new card?", "card_arrival", "card_arrival"),     # an approval
            ("I lost my card [CARD]", "lost_or_stolen_card", "card_arrival"),  # a correction
            ("what's the weather like", "out_of_scope", "card_arrival"),      # out of scope
            ("what's the weather like tomorrow", "oos", "out_of_scope"),      # its short form
            (f"  {validation_text.upper()} ", "card_arrival", "card_arrival"),  # a validation text: left out
            ("some text", "not_an_intent", "card_arrival"),                   # unknown label: left out
            ("   ", "card_arrival", "card_arrival")]                          # no text: left out
    oos = out_of_scope_material(clinc_train_per_intent=2)
    material = reviewed_material(rows, intents={r.category for r in split["train"]},
                                 held_out_texts=held_out_texts(split["validation"], oos))
    assert [(r.text, r.category) for r in material.train] == [("where is my new card?", "card_arrival"),
                                                              ("I lost my card [CARD]", "lost_or_stolen_card")]
    assert material.out_of_scope == ["what's the weather like", "what's the weather like tomorrow"]
    assert material.to_metrics() == {
        "reviewed_rows": 4, "reviewed_in_scope": 2, "reviewed_out_of_scope": 2, "reviewed_corrections": 2,
        "reviewed_left_out_held_out": 1, "reviewed_left_out_unknown_label": 1, "reviewed_left_out_empty": 1}
    # Every set a figure is measured on is held out: validation, calibration, gate and report sets.
    held = set(held_out_texts(split["validation"], oos))
    assert set(oos.calibration) | set(oos.heldout) | set(oos.reports["heldout2"]) <= held
    assert not held & set(oos.train)


def test_reviewed_labels_change_the_training_fingerprint():
    split = split_banking77()
    train = first_per_intent(split["train"], 3)
    intents = sorted({r.category for r in train})[:4]
    train = [r for r in train if r.category in intents]
    oos = load_out_of_scope("train")[:20]
    plain = train_candidate(train, split["validation"][:50], oos, load_out_of_scope("heldout"), encoder=HashingEncoder())
    material = reviewed_material([("my card has not arrived yet", intents[0], intents[1])], intents, [])
    more = train_candidate(train + material.train, split["validation"][:50], oos, load_out_of_scope("heldout"),
                           encoder=HashingEncoder())
    assert plain.fingerprint != more.fingerprint
    assert more.metrics["n_train"] == plain.metrics["n_train"] + 1
