"""The intent model's fitted scikit-learn parts, frozen into plain arrays for serving.

Training fits scikit-learn's TfidfVectorizer (word 1-2-grams, character 2-5-grams within word
boundaries) and LogisticRegression; serving needs only what they learnt: each vocabulary, its
idf weights, the coefficients. Frozen here into dicts and numpy arrays, a saved model holds no
scikit-learn object, so a process that serves it never imports scikit-learn — which, with SciPy's
statistics and pandas that it imports, was 0.95 s of the 1.2 s from a serving process's start to
its first answer. The arithmetic is scikit-learn's (same analyzers, sublinear tf, idf, l2
normalisation, softmax or logistic); ai_assets_tests/serving/intent/test_text_view.py holds the
two to each other on every BANKING77 text.

Pure numpy and `re`; no Dagster, no scikit-learn import (it is passed in, fitted, to freeze).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's, for the char_wb analyzer
_SUPPORTED = {"lowercase": True, "preprocessor": None, "tokenizer": None, "stop_words": None,
              "strip_accents": None, "sublinear_tf": True, "use_idf": True, "norm": "l2", "binary": False,
              "input": "content"}


@dataclass(frozen=True)
class FrozenTfidf:
    """One fitted TfidfVectorizer: analyzer, n-gram range, vocabulary and idf weights."""

    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    token_pattern: str
    vocabulary: dict[str, int]
    idf: np.ndarray  # float32, one per vocabulary column

    @classmethod
    def from_sklearn(cls, vectorizer: Any) -> FrozenTfidf:
        params = vectorizer.get_params()
        unsupported = {k: params[k] for k, v in _SUPPORTED.items() if params.get(k) != v}
        if unsupported or params["analyzer"] not in ("word", "char_wb"):
            raise ValueError(f"cannot freeze a TfidfVectorizer with {unsupported or params['analyzer']}")
        return cls(params["analyzer"], tuple(params["ngram_range"]), params["token_pattern"],
                   {str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
                   np.asarray(vectorizer.idf_, dtype=np.float32))

    def terms(self, text: str) -> list[str]:
        text = text.lower()
        low, high = self.ngram_range
        if self.analyzer == "char_wb":
            grams: list[str] = []
            for word in _WHITE_SPACES.sub(" ", text).split():
                word = " " + word + " "
                for n in range(low, high + 1):
                    if len(word) <= n:  # scikit-learn: a word no longer than n counts once, not again for larger n
                        grams.append(word)
                        break
                    grams.extend([word[i:i + n] for i in range(len(word) - n + 1)])
            return grams
        tokens = re.findall(self.token_pattern, text)
        grams = list(tokens) if low == 1 else []
        for n in range(max(low, 2), min(high, len(tokens)) + 1):
            grams.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
        return grams

    def rows(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The texts' tf-idf rows, sparse: row of each entry, column (ascending within a row) and
        value (sublinear tf × idf, each row l2-normalised, float32)."""
        vocabulary = self.vocabulary
        columns: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        for row, text in enumerate(texts):
            found = [vocabulary[t] for t in self.terms(text) if t in vocabulary]
            columns.extend(found)
            lengths[row] = len(found)
        # One sort for all texts: (row, column) pairs, counted, in row then column order.
        keys = np.repeat(np.arange(len(texts), dtype=np.int64), lengths) * len(self.idf) + np.array(
            columns, dtype=np.int64)
        pairs, counts = np.unique(keys, return_counts=True)
        row_of_a, index_a = np.divmod(pairs, len(self.idf))
        values = (np.log(np.array(counts, dtype=np.float32)) + np.float32(1.0)) * self.idf[index_a]
        squares = np.bincount(row_of_a, weights=values.astype(np.float64) ** 2, minlength=len(texts))
        return row_of_a, index_a, (values / np.sqrt(squares)[row_of_a]).astype(np.float32)


@dataclass(frozen=True)
class FrozenLinear:
    """A fitted LogisticRegression: coefficients, intercepts and the classes they score."""

    coef: np.ndarray  # (1 or n_classes, n_features)
    intercept: np.ndarray
    classes: np.ndarray  # the label indices the model was fitted on

    @classmethod
    def from_sklearn(cls, model: Any) -> FrozenLinear:
        return cls(np.ascontiguousarray(model.coef_), np.asarray(model.intercept_), np.asarray(model.classes_))

    def proba(self, scores: np.ndarray) -> np.ndarray:
        """Class probabilities from the decision scores (n, 1 or classes), as scikit-learn gives them."""
        if self.coef.shape[0] == 1:  # two classes: one logistic score
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)

    def proba_dense(self, x: np.ndarray) -> np.ndarray:
        return self.proba(x @ self.coef.T + self.intercept)


@dataclass(frozen=True)
class FrozenTextView:
    """The TF-IDF union (word and character blocks, side by side) and its logistic regression."""

    blocks: tuple[FrozenTfidf, ...]
    head: FrozenLinear

    @classmethod
    def from_sklearn(cls, union: Any, model: Any) -> FrozenTextView:
        return cls(tuple(FrozenTfidf.from_sklearn(v) for _, v in union.transformer_list),
                   FrozenLinear.from_sklearn(model))

    def proba(self, texts: Sequence[str], chunk: int = 256) -> np.ndarray:
        coef_t = self.head.coef.T  # (features, classes)
        scores = np.zeros((len(texts), coef_t.shape[1]), dtype=np.result_type(coef_t, np.float32))
        for start in range(0, len(texts), chunk):  # bounds the (entries x classes) products
            part = texts[start:start + chunk]
            offset = 0
            for block in self.blocks:
                row_of, index, values = block.rows(part)
                if len(index):  # entries come row by row: one sum per run of a row
                    rows, starts = np.unique(row_of, return_index=True)
                    scores[rows + start] += np.add.reduceat(coef_t[index + offset] * values[:, None], starts, axis=0)
                offset += len(block.idf)
        return self.head.proba(scores + self.head.intercept)
