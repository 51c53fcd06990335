"""The local intent model: threshold choice, fingerprint, training, calibration, OOS, persistence.

Most tests use a small deterministic hashing encoder so they test the model's own logic in
milliseconds; one module-scoped model uses the shipped all-MiniLM-L6-v2 ONNX encoder on a
subset of the training split, to prove the production encoder path.
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
import re
from collections import defaultdict
from importlib import resources

import numpy as np
import pytest

from ai_assets.data.datasets import load_banking77, split_banking77
from ai_assets.serving.intent.intent_model import (
    OUT_OF_SCOPE,
    IntentModel,
    IntentModelConfig,
    Prediction,
    evaluate,
    fingerprint_training_data,
    threshold_for_precision,
)
from ai_assets.serving.intent.out_of_scope import (
    OOS_SPLITS,
    is_out_of_scope_label,
    load_out_of_scope,
    load_out_of_scope_topics,
)
from ai_assets.serving.intent.text_encoders import MiniLMEncoder

N_INTENTS = 12
PER_INTENT = 30


class HashEncoder:
    """Signed hashing of words and word bigrams into 512 dims, L2-normalised (test double)."""

    name = "test-hash-encoder"
    version = "1"

    def accepts(self, version):
        return version in (None, self.version)

    def encode(self, texts):
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for i, text in enumerate(texts):
            words = re.findall(r"\w+", text.lower())
            for token in words + [a + " " + b for a, b in zip(words, words[1:])]:
                h = int(hashlib.md5(token.encode()).hexdigest(), 16)
                out[i, h % 512] += 1.0 if (h >> 20) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


def _subset(rows, intents, per_intent=None):
    by = defaultdict(list)
    for r in rows:
        if r.category in intents:
            by[r.category].append(r)
    out = []
    for intent in sorted(by):
        out += by[intent][:per_intent] if per_intent else by[intent]
    return out


@pytest.fixture(scope="module")
def split():
    return split_banking77()


@pytest.fixture(scope="module")
def intents(split):
    return sorted({r.category for r in split["train"]})[:: 77 // N_INTENTS][:N_INTENTS]


@pytest.fixture(scope="module")
def small(split, intents):
    train = _subset(split["train"], intents, PER_INTENT)
    validation = _subset(split["validation"], intents)
    oos = load_out_of_scope("train")
    return train, validation, oos


@pytest.fixture(scope="module")
def hashed_model(small):
    train, _, oos = small
    return IntentModel.train([r.text for r in train], [r.category for r in train], oos[::2], seed=3,
                             encoder=HashEncoder())


# ----------------------------------------------------------------- threshold_for_precision


def test_threshold_is_the_lowest_that_keeps_the_target_precision():
    conf = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6]
    correct = [True, True, True, True, False, True]
    r = threshold_for_precision(conf, correct, 0.8)
    # 5 rows down to 0.7 hold 4/5 = 0.8; all 6 hold 5/6 = 0.83: the lowest cut wins.
    assert r.threshold == 0.6 and r.coverage == 1.0 and r.n_automated == 6
    r = threshold_for_precision(conf, correct, 0.9)
    assert r.threshold == 0.8 and r.coverage == pytest.approx(4 / 6) and r.precision == 1.0


def test_threshold_never_splits_equal_confidences():
    r = threshold_for_precision([0.9, 0.9, 0.9, 0.5], [True, False, True, True], 0.9)
    # Cutting inside the 0.9 run is impossible; the run holds 2/3 < 0.9, so nothing qualifies.
    assert r.threshold == math.inf and r.coverage == 0.0 and r.precision is None


def test_threshold_unreachable_and_non_finite_rows():
    assert threshold_for_precision([0.9, 0.8], [False, False], 0.98).threshold == math.inf
    assert threshold_for_precision([], [], 0.98).threshold == math.inf
    # -inf / NaN rows (predicted out of scope) are never automated but count in coverage.
    r = threshold_for_precision([0.9, -math.inf, float("nan"), 0.8], [True, False, False, True], 0.98)
    assert r.threshold == 0.8 and r.coverage == 0.5 and r.n == 4


def test_threshold_weights_let_few_rows_stand_for_many():
    conf = [0.95, 0.9, 0.85]
    correct = [True, False, True]
    assert threshold_for_precision(conf, correct, 0.9).threshold == 0.95
    # The wrong row weighs little: automating all three keeps precision 2 / 2.05 >= 0.9.
    r = threshold_for_precision(conf, correct, 0.9, weights=[1.0, 0.05, 1.0])
    assert r.threshold == 0.85 and r.coverage == pytest.approx(1.0) and r.precision == pytest.approx(2 / 2.05)
    with pytest.raises(ValueError):
        threshold_for_precision(conf, correct, 0.9, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError):
        threshold_for_precision([0.5], [True, False])
    with pytest.raises(ValueError):
        threshold_for_precision([0.5], [True], target=0.0)


# ----------------------------------------------------------------- fingerprint and data files


def test_fingerprint_ignores_order_and_oos_spelling_but_not_content():
    texts, labels = ["a", "b", "c"], ["x", "y", OUT_OF_SCOPE]
    fp = fingerprint_training_data(texts, labels)
    assert fp.startswith("sha256:") and len(fp) == 7 + 64
    assert fingerprint_training_data(texts[::-1], labels[::-1]) == fp
    assert fingerprint_training_data(texts, ["x", "y", "OOS"]) == fp
    assert fingerprint_training_data(texts, ["x", "x", OUT_OF_SCOPE]) != fp
    assert fingerprint_training_data(["a", "b", "c "], labels) != fp
    with pytest.raises(ValueError):
        fingerprint_training_data(["a"], [])


def test_out_of_scope_files_are_disjoint_and_not_banking77():
    sets = {split: load_out_of_scope(split) for split in OOS_SPLITS}
    assert len(sets["train"]) >= 300 and len(sets["heldout"]) >= 100 and len(sets["heldout2"]) >= 50
    for split, texts in sets.items():
        assert len(texts) == len(set(texts)), f"duplicates in {split}"
        assert all(t and not t.startswith("#") for t in texts)
    norm = {split: {t.lower().strip() for t in texts} for split, texts in sets.items()}
    assert not norm["train"] & norm["heldout"] and not norm["train"] & norm["heldout2"]
    assert not norm["heldout"] & norm["heldout2"]
    banking = {r.text.lower().strip() for r in load_banking77()}
    assert not banking & (norm["train"] | norm["heldout"] | norm["heldout2"])
    topics = load_out_of_scope_topics("train")
    assert {"weather", "prompt injection and attempts to steer the system", "loans and credit"} <= set(topics)
    assert sum(map(len, topics.values())) == len(sets["train"])
    readme = resources.files("ai_assets.data.out_of_scope").joinpath("README.md").read_text("utf-8")
    assert "hand" in readme.lower() and "written" in readme.lower()
    with pytest.raises(ValueError):
        load_out_of_scope("test")


def test_oos_label_aliases():
    assert is_out_of_scope_label("out_of_scope") and is_out_of_scope_label(" OOS ")
    assert not is_out_of_scope_label("card_arrival")


# ----------------------------------------------------------------- training and prediction


def test_training_learns_the_intents_and_the_oos_class(hashed_model, small, intents):
    train, validation, oos = small
    assert hashed_model.intents == sorted(intents)
    assert hashed_model.labels == sorted(intents) + [OUT_OF_SCOPE]
    assert hashed_model.info["n_train"] == len(train) and hashed_model.info["n_out_of_scope"] == len(oos[::2])
    assert hashed_model.info["training_fingerprint"] == fingerprint_training_data(
        [r.text for r in train] + oos[::2], [r.category for r in train] + ["oos"] * len(oos[::2]))
    assert 0.05 < hashed_model.temperature < 20
    metrics = evaluate(hashed_model, [r.text for r in validation], [r.category for r in validation])
    assert metrics["accuracy"] > 0.75, metrics
    # Out-of-scope training messages the model never saw (the other half of the file).
    unseen = oos[1::2]
    flagged = [p.is_out_of_scope for p in hashed_model.predict(unseen)]
    assert sum(flagged) / len(flagged) > 0.6


def test_predictions_are_well_formed(hashed_model, small):
    _, validation, _ = small
    preds = hashed_model.predict([r.text for r in validation[:20]] + ["", "asdfghjkl qwerty"], top_k=4)
    assert len(preds) == 22
    for p in preds:
        assert isinstance(p, Prediction)
        assert 0.0 <= p.confidence <= 1.0
        assert len(p.top_k) == 4
        probs = [q for _, q in p.top_k]
        assert probs == sorted(probs, reverse=True)
        assert all(label in hashed_model.labels for label, _ in p.top_k)
        if p.is_out_of_scope:
            assert p.intent == OUT_OF_SCOPE and not p.automated
        else:
            assert p.intent in hashed_model.intents and p.top_k[0][0] == p.intent
    calibrated, nearest = hashed_model.predict_proba(["my card has not arrived"])
    assert calibrated.shape == (1, len(hashed_model.labels)) and nearest.shape == (1,)
    assert calibrated.sum() == pytest.approx(1.0)
    assert hashed_model.predict([]) == []


def test_same_data_in_any_order_gives_the_same_model(hashed_model, small):
    train, validation, oos = small
    rows = list(zip([r.text for r in train] + oos[::2], [r.category for r in train] + [OUT_OF_SCOPE] * len(oos[::2])))
    random.Random(11).shuffle(rows)
    again = IntentModel.train([t for t, _ in rows], [label for _, label in rows], seed=3, encoder=HashEncoder())
    texts = [r.text for r in validation] + oos[1::2]
    assert again.fingerprint == hashed_model.fingerprint
    assert again.temperature == hashed_model.temperature
    assert again.predict(texts) == hashed_model.predict(texts)


def test_a_different_seed_only_moves_the_calibration_folds(hashed_model, small):
    train, validation, oos = small
    other = IntentModel.train([r.text for r in train], [r.category for r in train], oos[::2], seed=4,
                              encoder=HashEncoder())
    assert other.fingerprint == hashed_model.fingerprint
    texts = [r.text for r in validation]
    same = sum(a.intent == b.intent for a, b in zip(other.predict(texts), hashed_model.predict(texts)))
    assert same / len(texts) > 0.95


def test_select_threshold_and_automation_flags(hashed_model, small):
    _, validation, oos = small
    model = copy.deepcopy(hashed_model)  # the same training as `hashed_model`, whose threshold stays unset
    texts, labels = [r.text for r in validation], [r.category for r in validation]
    assert model.threshold is None and not any(p.automated for p in model.predict(texts))
    result = model.select_threshold(texts, labels, target=0.9, oos_share=0.0)
    assert model.threshold == result.threshold and model.threshold_info["n_training_oos_pool"] == 0
    preds = model.predict(texts)
    auto = [p for p in preds if p.automated]
    assert all(p.confidence >= model.threshold and not p.is_out_of_scope for p in auto)
    assert len(auto) == result.n_automated
    assert sum(p.intent == lab for p, lab in zip(preds, labels) if p.automated) / len(auto) >= 0.9
    # The training out-of-scope pool (weighted to 20 % of traffic) can only raise the threshold.
    stricter = model.select_threshold(texts, labels, target=0.9, oos_share=0.2).threshold
    assert stricter >= result.threshold
    assert model.threshold_info["oos_share"] == 0.2 and model.threshold_info["n_training_oos_pool"] == len(oos[::2])
    # An explicit cap on automated out-of-scope rows raises it further if needed.
    capped = model.select_threshold(texts, labels, target=0.9, oos_share=0.2, max_oos_automated=0.0).threshold
    assert capped >= stricter
    assert not any(c >= capped for c in model.calibration_oos)
    with pytest.raises(ValueError):
        model.select_threshold(texts, labels, oos_share=1.0)


def test_evaluate_counts_out_of_scope_rows_as_must_not_automate(hashed_model, small):
    _, validation, oos = small
    model = copy.deepcopy(hashed_model)
    texts = [r.text for r in validation] + oos[1::2]
    labels = [r.category for r in validation] + ["oos"] * len(oos[1::2])
    m = evaluate(model, texts, labels, threshold=0.0)
    assert m["n"] == len(texts) and m["n_out_of_scope"] == len(oos[1::2])
    for key in ("accuracy", "macro_f1", "automated_share", "automated_precision", "out_of_scope_automated",
                "out_of_scope_recall", "in_scope_accuracy", "in_scope_coverage", "coverage_at_target", "ece"):
        assert key in m
    # Threshold 0: everything answered in scope is automated, so every OOS row answered in
    # scope is an automated one.
    assert m["out_of_scope_automated"] == pytest.approx(1.0 - m["out_of_scope_recall"])
    nothing = evaluate(model, texts, labels, threshold=math.inf)
    assert nothing["automated_share"] == 0.0 and nothing["automated_precision"] is None
    assert evaluate(model, texts, labels)["automated_share"] == 0.0  # no threshold chosen yet


def test_save_and_load_round_trip(hashed_model, small, tmp_path):
    _, validation, _ = small
    hashed_model.threshold, hashed_model.threshold_info = 0.5, {"threshold": 0.5}
    try:
        path = hashed_model.save(tmp_path / "sub" / "model.joblib")
        assert path.exists() and not list(path.parent.glob("*.tmp"))
        loaded = IntentModel.load(path, encoder=HashEncoder())
    finally:
        hashed_model.threshold = hashed_model.threshold_info = None
    texts = [r.text for r in validation]
    assert loaded.threshold == 0.5 and loaded.info == hashed_model.info
    assert [p.intent for p in loaded.predict(texts)] == [p.intent for p in hashed_model.predict(texts)]
    with pytest.raises(ValueError, match="encoder"):
        IntentModel.load(path, encoder=MiniLMEncoder())
    (tmp_path / "junk.joblib").write_bytes(b"not a model")
    with pytest.raises(Exception):  # noqa: B017 (whatever joblib raises on junk: it must not load)
        IntentModel.load(tmp_path / "junk.joblib", encoder=HashEncoder())


def _saved_state(model, **changes):
    state = {"format_version": 2, "labels": model.labels, "components": model._components,
             "temperature": model.temperature, "novelty_floor": model.novelty_floor, "info": model.info,
             "calibration_oos": model.calibration_oos, "threshold": 0.5, "threshold_info": {"threshold": 0.5}}
    return {**state, **changes}


def test_files_of_earlier_layouts_load_and_fine_tuned_ones_are_refused(hashed_model, small, tmp_path, monkeypatch):
    """Format 1, and format 2 as written while the (removed) encoder fine-tuning existed: a frozen
    model carried `tuned = None` in its components. Both load and answer as before; a file that
    does carry fine-tuned layers is refused with a message that says so."""
    import joblib

    from ai_assets.serving.intent import intent_model

    _, validation, _ = small
    texts = [r.text for r in validation]
    expected = hashed_model.predict(texts)
    legacy = copy.copy(hashed_model._components)
    legacy.tuned = None
    legacy.config = copy.copy(legacy.config)
    for field, value in (("fine_tune_layers", 0), ("fine_tune_folds", 2), ("max_seq_length", 64)):
        object.__setattr__(legacy.config, field, value)  # the removed config fields, as pickled then
    for version in (1, 2):
        state = _saved_state(hashed_model, format_version=version, components=legacy)
        joblib.dump(state, tmp_path / f"v{version}.joblib")
        loaded = IntentModel.load(tmp_path / f"v{version}.joblib", encoder=HashEncoder())
        assert loaded.threshold == 0.5
        assert [(p.intent, p.confidence, p.top_k) for p in loaded.predict(texts)] == \
            [(p.intent, p.confidence, p.top_k) for p in expected]

    class _TunedTop:  # stands in for the removed class of that name, only while the file is written
        pass

    _TunedTop.__module__, _TunedTop.__qualname__ = intent_model.__name__, "_TunedTop"
    monkeypatch.setattr(intent_model, "_TunedTop", _TunedTop, raising=False)
    tuned = copy.copy(hashed_model._components)
    tuned.tuned = _TunedTop()
    joblib.dump(_saved_state(hashed_model, components=tuned), tmp_path / "tuned.joblib")
    monkeypatch.delattr(intent_model, "_TunedTop")
    with pytest.raises(ValueError, match="fine-tuned encoder layers"):
        IntentModel.load(tmp_path / "tuned.joblib", encoder=HashEncoder())
    with pytest.raises(ValueError, match="format"):
        joblib.dump(_saved_state(hashed_model, format_version=4), tmp_path / "v4.joblib")
        IntentModel.load(tmp_path / "v4.joblib", encoder=HashEncoder())


def test_training_rejects_bad_input():
    with pytest.raises(ValueError):
        IntentModel.train(["a", "b"], ["x"], encoder=HashEncoder())
    with pytest.raises(ValueError):
        IntentModel.train(["a", "b"], ["x", "x"], encoder=HashEncoder())
    with pytest.raises(TypeError):
        IntentModel.train(["a", None], ["x", "y"], encoder=HashEncoder())


def test_novelty_floor_without_an_oos_class(small):
    train, _, _ = small
    model = IntentModel.train([r.text for r in train], [r.category for r in train], seed=0,
                              encoder=HashEncoder(), config=IntentModelConfig(novelty_quantile=0.05))
    assert OUT_OF_SCOPE not in model.labels
    # Far from every training message: only the novelty floor can call it out of scope.
    pred = model.predict(["zebra xylophone quantum marmalade"])[0]
    assert pred.is_out_of_scope and pred.intent == OUT_OF_SCOPE


# ----------------------------------------------------------------- the real encoder


@pytest.fixture(scope="module")
def minilm_model(split):
    intents = sorted({r.category for r in split["train"]})[::4]  # 20 intents
    train = _subset(split["train"], intents, 40)
    return intents, IntentModel.train([r.text for r in train], [r.category for r in train],
                                      load_out_of_scope("train"), seed=0)


@pytest.mark.slow
def test_minilm_model_on_a_subset(minilm_model, split):
    intents, model = minilm_model
    assert model.info["encoder"] == MiniLMEncoder.name
    validation = _subset(split["validation"], intents)
    texts, labels = [r.text for r in validation], [r.category for r in validation]
    model.select_threshold(texts, labels, target=0.98)
    m = evaluate(model, texts + load_out_of_scope("heldout"), labels + ["oos"] * len(load_out_of_scope("heldout")))
    assert m["in_scope_accuracy"] > 0.9, m
    assert m["out_of_scope_recall"] > 0.8, m
    assert m["out_of_scope_automated"] < 0.05, m
    assert m["in_scope_coverage"] > 0.6, m
    # Calibrated: the mean confidence of in-scope answers is close to their accuracy.
    assert m["ece"] < 0.08, m


def test_minilm_encoder_is_normalised():
    vectors = MiniLMEncoder().encode(["I lost my card", "what's the weather"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert MiniLMEncoder().encode([]).shape == (0, 384)
