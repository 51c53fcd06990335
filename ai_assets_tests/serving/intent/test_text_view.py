"""The frozen text view gives scikit-learn's answers, and serving a saved model needs no scikit-learn."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_union

from ai_assets.data.datasets import load_banking77
from ai_assets.serving.intent.intent_model import IntentModel
from ai_assets.serving.intent.out_of_scope import load_out_of_scope
from ai_assets.serving.intent.text_encoders import HashingEncoder
from ai_assets.serving.intent.text_view import FrozenLinear, FrozenTextView

ROWS = load_banking77()
AWKWARD = ["", "   ", "a", "I", "x y", "Café  crème\t\tnaïve", "我的银行卡丢了", "card 💳 😡", "\x00\x07",
           "don't can't won't", "a" * 300, "top-up top up topup", "<b>refund</b> &amp;"]


def _fitted(rows, text_c: float = 10.0):
    texts = [r.text for r in rows]
    labels = sorted({r.category for r in rows})
    y = np.array([labels.index(r.category) for r in rows])
    union = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32),
                       TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True,
                                       dtype=np.float32))
    model = LogisticRegression(C=text_c, max_iter=1000, tol=1e-3, random_state=0).fit(union.fit_transform(texts), y)
    return union, model


@pytest.mark.parametrize("n_intents", [2, 12])
def test_the_frozen_text_view_answers_as_scikit_learn_does(n_intents):
    intents = sorted({r.category for r in ROWS})[:n_intents]
    union, model = _fitted([r for intent in intents for r in [r for r in ROWS if r.category == intent][:60]])
    frozen = FrozenTextView.from_sklearn(union, model)
    texts = [r.text for r in ROWS] + AWKWARD
    expected = model.predict_proba(union.transform(texts))
    got = frozen.proba(texts)
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) < 1e-5
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() > 0.9999


def test_the_frozen_linear_head_answers_as_scikit_learn_does():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    for classes in (2, 5):
        y = np.arange(300) % classes
        model = LogisticRegression(max_iter=500).fit(x, y)
        assert np.abs(FrozenLinear.from_sklearn(model).proba_dense(x) - model.predict_proba(x)).max() < 1e-6


def test_a_vectorizer_it_cannot_reproduce_is_refused():
    from ai_assets.serving.intent.text_view import FrozenTfidf

    vectorizer = TfidfVectorizer(stop_words="english").fit(["a card", "my card"])
    with pytest.raises(ValueError, match="cannot freeze"):
        FrozenTfidf.from_sklearn(vectorizer)


SERVE_WITHOUT_SKLEARN = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sklearn", "scipy", "pandas"):
            raise ImportError(f"{name} is unimportable in this test")
sys.meta_path.insert(0, Refuse())
from ai_assets.serving.intent.intent_model import IntentModel
from ai_assets.serving.intent.text_encoders import HashingEncoder
model = IntentModel.load(sys.argv[1], encoder=HashingEncoder())
print(" ".join(p.intent for p in model.predict(sys.argv[2:])))
"""


def test_a_saved_model_is_served_without_scikit_learn(tmp_path):
    rows = [r for intent in ("card_arrival", "lost_or_stolen_card", "top_up_failed")
            for r in [r for r in ROWS if r.category == intent][:50]]
    model = IntentModel.train([r.text for r in rows], [r.category for r in rows], load_out_of_scope("train")[:60],
                              encoder=HashingEncoder(), seed=0)
    path = model.save(tmp_path / "model.joblib")
    assert b"sklearn." not in path.read_bytes()  # no scikit-learn class is pickled in it
    texts = ["my card has not arrived yet", "I lost my card", "my top-up failed"]
    done = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_SKLEARN, str(path), *texts], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [p.intent for p in model.predict(texts)]
