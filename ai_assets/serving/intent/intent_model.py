"""The local intent model: 77 BANKING77 intents plus `out_of_scope`, calibrated, on a CPU.

Pure logic, no Dagster. The model is a small ensemble over two views of a message:

  text view       TF-IDF of word 1-2-grams and character 2-5-grams → logistic regression
  meaning view    all-MiniLM-L6-v2 sentence embedding → logistic regression, and a cosine
                  k-nearest-neighbour vote over the training rows. The encoder is the ONNX
                  graph shipped in ai_assets/data/encoders/ (text_encoders.py), used frozen
                  and never saved with the model; the model records its name and version.

The three probability vectors (78 labels: the intents and `out_of_scope`, learnt from the
hand-written examples in ai_assets/data/out_of_scope/) are averaged and calibrated by one
temperature fitted on out-of-fold predictions (k-fold cross-fitting on the training data).
A message is out of scope when `out_of_scope` outweighs the best intent, or when it is
further from every in-scope training message than the novelty floor (a low quantile of the
out-of-fold nearest-neighbour similarity of in-scope training messages).

The views are fitted with scikit-learn and then frozen into plain arrays (text_view.py): a
saved model holds no scikit-learn object, and a process that only serves never imports it.

`confidence` is the calibrated probability of the predicted intent. A message is automated
when it is in scope and its confidence is at least the model's threshold, which
`IntentModel.select_threshold` fixes on a held-out split so that the automated messages
reach a target precision, out-of-scope messages that would be automated counting as errors.

Deterministic: training rows are put in a canonical order first, folds and solvers are
seeded, so the same training data (in any order) and seed give the same predictions.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ai_assets.serving.intent.guarantee import certify, grid_ceiling, lower_bound
from ai_assets.serving.intent.out_of_scope import OUT_OF_SCOPE, is_out_of_scope_label
from ai_assets.serving.intent.text_encoders import TextEncoder, default_encoder
from ai_assets.serving.intent.text_view import FrozenLinear, FrozenTextView

__all__ = [
    "OUT_OF_SCOPE",
    "FORMAT_VERSION",
    "INTENT_MODEL",
    "IntentModel",
    "IntentModelConfig",
    "Prediction",
    "ThresholdResult",
    "evaluate",
    "fingerprint_training_data",
    "threshold_for_precision",
]

INTENT_MODEL = "intent_model"  # the model's name in the registry
# The saved file's layout. 3 is what this code writes: the fitted views as plain arrays
# (text_view.py), no scikit-learn object, so older code cannot read it. 1 and 2 (scikit-learn
# objects, frozen encoder) still load and are frozen on load. A format-2 file written with
# fine-tuned encoder layers cannot be served any more and is refused with a message saying so.
FORMAT_VERSION = 3
_READABLE_FORMATS = (1, 2, 3)
_EPS = 1e-12


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Prediction:
    """One message's answer.

    intent           one of the model's intents, or OUT_OF_SCOPE
    confidence       calibrated probability that `intent` is right; for an out-of-scope
                     answer, the probability that the best intent is wrong
    is_out_of_scope  the model recognised the message as none of its intents
    automated        in scope and confidence >= the model's threshold (False while the
                     model has no threshold)
    top_k            the best labels with their calibrated probabilities, best first
    """

    intent: str
    confidence: float
    is_out_of_scope: bool
    automated: bool = False
    top_k: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ThresholdResult:
    """A confidence threshold and what it automates on the rows it was chosen on."""

    threshold: float  # math.inf: no threshold reaches the target, nothing is automated
    coverage: float  # automated rows / all rows
    precision: float | None  # correct automated rows / automated rows (None if none)
    target: float
    n: int
    n_automated: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IntentModelConfig:
    """Hyper-parameters, fixed before looking at validation or held-out data."""

    text_c: float = 10.0  # inverse regularisation of the TF-IDF logistic regression
    embedding_c: float = 30.0  # inverse regularisation of the embedding logistic regression
    knn_k: int = 20
    knn_temperature: float = 0.05  # neighbour weight exp((cosine - 1) / t)
    folds: int = 3  # cross-fitting folds for the temperature and the novelty floor
    novelty_quantile: float = 0.005  # in-scope training messages allowed under the floor
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # text LR, embedding LR, kNN


# --------------------------------------------------------------------------- helpers


def _canonical(texts: Sequence[str], labels: Sequence[str]) -> list[tuple[str, str]]:
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    pairs = []
    for text, label in zip(texts, labels, strict=True):
        if not isinstance(text, str) or not isinstance(label, str):
            raise TypeError("texts and labels must be strings")
        pairs.append((text, OUT_OF_SCOPE if is_out_of_scope_label(label) else label))
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def fingerprint_training_data(texts: Sequence[str], labels: Sequence[str]) -> str:
    """SHA-256 of the (text, label) multiset; `oos` and `out_of_scope` count as one label.

    Order-insensitive, like training itself: the same rows in any order give the same
    fingerprint and the same model.
    """
    digest = hashlib.sha256()
    for text, label in _canonical(texts, labels):
        digest.update(label.encode("utf-8") + b"\x1f" + text.encode("utf-8") + b"\x1e")
    return "sha256:" + digest.hexdigest()


def threshold_for_precision(confidences: Sequence[float], correct: Sequence[bool],
                            target: float = 0.98, weights: Sequence[float] | None = None) -> ThresholdResult:
    """The lowest confidence threshold whose automated rows reach `target` precision.

    Rows with confidence >= threshold are automated. Among all thresholds (each distinct
    confidence value) whose automated rows are at least `target` correct, the one
    automating the most rows is returned. Non-finite confidences (NaN, -inf) mark rows that
    can never be automated, such as messages predicted out of scope: they count in the
    coverage denominator only. An out-of-scope message predicted in scope must be passed
    with correct=False. `weights` (default 1 per row) let a row stand for several messages,
    e.g. a small out-of-scope sample standing for its share of traffic; coverage and
    precision are then weighted shares. If no threshold reaches the target the threshold
    is math.inf.
    """
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    w_all = np.ones(len(conf)) if weights is None else np.asarray(weights, dtype=float)
    if conf.shape != ok.shape or conf.shape != w_all.shape or conf.ndim != 1:
        raise ValueError("confidences, correct and weights must be 1-d and of equal length")
    if not 0.0 < target <= 1.0:
        raise ValueError("target must be in (0, 1]")
    if (w_all < 0).any():
        raise ValueError("weights must be non-negative")
    n = len(conf)
    total = float(w_all.sum())
    finite = np.isfinite(conf)
    c, k, w = conf[finite], ok[finite], w_all[finite]
    if len(c) == 0 or total <= 0:
        return ThresholdResult(math.inf, 0.0, None, target, n, 0)
    order = np.argsort(-c, kind="stable")
    c, k, w = c[order], k[order], w[order]
    hits = np.cumsum(w * k)
    mass = np.cumsum(w)
    # Only the last row of a run of equal confidences is a possible cut.
    last_of_run = np.append(c[1:] != c[:-1], True)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(mass > 0, hits / np.where(mass > 0, mass, 1), 0.0)
    candidates = np.flatnonzero(last_of_run & (mass > 0) & (precision >= target - 1e-12))
    if len(candidates) == 0:
        return ThresholdResult(math.inf, 0.0, None, target, n, 0)
    i = int(candidates.max())
    return ThresholdResult(float(c[i]), float(mass[i] / total), float(precision[i]), target, n, i + 1)


def _softmax_with_temperature(log_p: np.ndarray, temperature: float) -> np.ndarray:
    z = log_p / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_temperature(log_p: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        p = _softmax_with_temperature(log_p, math.exp(log_t))
        return float(-np.log(p[rows, y] + _EPS).mean())

    best = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                           options={"xatol": 1e-4})
    return float(math.exp(best.x))


class _Components:
    """The three fitted views over one set of training rows.

    Fitted with scikit-learn, then frozen into plain arrays (text_view.py): the object, and so a
    saved model, holds no scikit-learn object, and serving never imports scikit-learn.
    """

    def __init__(self, texts: list[str], emb: np.ndarray, y: np.ndarray, n_labels: int,
                 in_scope: np.ndarray, config: IntentModelConfig, seed: int):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_union

        self.n_labels = n_labels
        vectorizer = make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True,
                            dtype=np.float32),
        )
        features = vectorizer.fit_transform(texts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs may stop at max_iter on tiny data
            text_lr = LogisticRegression(C=config.text_c, max_iter=1000, tol=1e-3, random_state=seed).fit(features, y)
            emb_lr = LogisticRegression(C=config.embedding_c, max_iter=1000, tol=1e-4, random_state=seed).fit(emb, y)
        self.text_view = FrozenTextView.from_sklearn(vectorizer, text_lr)
        self.emb_head = FrozenLinear.from_sklearn(emb_lr)
        self.knn_vectors = emb.astype(np.float16)
        self.knn_labels = y.astype(np.int32)
        self.knn_in_scope = in_scope.astype(bool)
        self.config = config

    def _knn_reference(self) -> np.ndarray:
        # The file keeps the rows in float16 (half the size); the float32 copy is made once per
        # process, not per call: per call it cost more than the network for a single message.
        reference = self.__dict__.get("_knn_float32")
        if reference is None:
            reference = self.__dict__["_knn_float32"] = self.knn_vectors.astype(np.float32)
        return reference

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_knn_float32", None)
        return state

    def __setstate__(self, state: dict) -> None:
        if "vectorizer" in state:  # format 1 or 2: scikit-learn objects, frozen now
            state["text_view"] = FrozenTextView.from_sklearn(state.pop("vectorizer"), state.pop("text_lr"))
            state["emb_head"] = FrozenLinear.from_sklearn(state.pop("emb_lr"))
        self.__dict__.update(state)

    def _full(self, head: FrozenLinear, proba: np.ndarray) -> np.ndarray:
        out = np.zeros((len(proba), self.n_labels), dtype=np.float64)
        out[:, head.classes] = proba
        return out

    def _nearest_in_scope(self, sims: np.ndarray, idx: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Each row's largest cosine to an in-scope reference row. Where the k nearest hold an
        in-scope row, the largest is among them (exactly); only the other rows are scanned whole."""
        in_top = self.knn_in_scope[idx]
        nearest = np.where(in_top, top, -np.inf).max(axis=1)
        scan = ~in_top.any(axis=1)
        if scan.any():
            nearest[scan] = np.where(self.knn_in_scope[None, :], sims[scan], -np.inf).max(axis=1)
        return nearest

    def probabilities(self, texts: list[str], emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Averaged raw probabilities (n, labels) and the cosine to the nearest in-scope row."""
        cfg = self.config
        p_text = self._full(self.text_view.head, self.text_view.proba(texts))
        p_emb = self._full(self.emb_head, self.emb_head.proba_dense(emb))
        p_knn = np.empty_like(p_emb)
        nearest_in = np.empty(len(texts), dtype=np.float64)
        reference = self._knn_reference()
        k = min(cfg.knn_k, len(reference))
        for start in range(0, len(texts), 1024):
            sims = emb[start:start + 1024] @ reference.T
            idx = np.argpartition(sims, -k, axis=1)[:, -k:]  # the k most similar rows, unordered
            top = np.take_along_axis(sims, idx, axis=1)
            weights = np.exp((top - 1.0) / cfg.knn_temperature)
            cells = (np.arange(len(sims))[:, None] * self.n_labels + self.knn_labels[idx]).ravel()
            votes = np.bincount(cells, weights.ravel(), minlength=len(sims) * self.n_labels).reshape(
                len(sims), self.n_labels) + 1e-3 / self.n_labels
            p_knn[start:start + 1024] = votes / votes.sum(axis=1, keepdims=True)
            nearest_in[start:start + 1024] = self._nearest_in_scope(sims, idx, top)
        w = np.asarray(cfg.weights, dtype=float)
        p = (w[0] * p_text + w[1] * p_emb + w[2] * p_knn) / w.sum()
        return p, nearest_in


# --------------------------------------------------------------------------- the model


class IntentModel:
    """Train with `IntentModel.train`, fix the threshold with `select_threshold`, then `predict`."""

    def __init__(self, labels: list[str], components: _Components, temperature: float,
                 novelty_floor: float, info: dict[str, Any], calibration_oos: np.ndarray,
                 encoder: TextEncoder | None = None):
        self.labels = labels
        self._components = components
        self.temperature = temperature
        self.novelty_floor = novelty_floor
        self.info = info
        # Out-of-fold (confidence if predicted in scope, else -inf) of the training
        # out-of-scope messages: unbiased stand-ins for unseen out-of-scope traffic when the
        # threshold is chosen.
        self.calibration_oos = calibration_oos
        self.threshold: float | None = None
        self.threshold_info: dict[str, Any] | None = None
        self._encoder = encoder

    # ---------------------------------------------------------------- properties

    @property
    def intents(self) -> list[str]:
        return [label for label in self.labels if label != OUT_OF_SCOPE]

    @property
    def fingerprint(self) -> str:
        return self.info["training_fingerprint"]

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = default_encoder()
        return self._encoder

    # ---------------------------------------------------------------- training

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], oos_texts: Sequence[str] = (), *,
              seed: int = 0, config: IntentModelConfig | None = None,
              encoder: TextEncoder | None = None) -> IntentModel:
        """Fit on labelled texts; `oos_texts` (and rows labelled `out_of_scope`/`oos`) teach
        the out-of-scope class. Rows are put in canonical order first, so order is irrelevant."""
        from sklearn.model_selection import StratifiedKFold

        started = time.perf_counter()
        config = config or IntentModelConfig()
        encoder = encoder or default_encoder()
        all_texts = list(texts) + list(oos_texts)
        all_labels = list(labels) + [OUT_OF_SCOPE] * len(oos_texts)
        pairs = _canonical(all_texts, all_labels)
        intents = sorted({label for _, label in pairs if label != OUT_OF_SCOPE})
        if len(intents) < 2:
            raise ValueError("training needs at least two intents")
        has_oos = any(label == OUT_OF_SCOPE for _, label in pairs)
        label_list = intents + ([OUT_OF_SCOPE] if has_oos else [])
        index = {label: i for i, label in enumerate(label_list)}
        x = [text for text, _ in pairs]
        y = np.array([index[label] for _, label in pairs], dtype=np.int64)
        in_scope = np.array([label != OUT_OF_SCOPE for _, label in pairs])

        t0 = time.perf_counter()
        emb = encoder.encode(x)
        encode_seconds = time.perf_counter() - t0

        # Cross-fitting: out-of-fold probabilities for calibration and the novelty floor.
        min_count = int(np.bincount(y).min())
        folds = max(2, min(config.folds, min_count))
        oof_p = np.zeros((len(x), len(label_list)))
        oof_near = np.zeros(len(x))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # classes smaller than `folds` on tiny data
            splits = list(splitter.split(np.zeros(len(y)), y))
        for fit_idx, held_idx in splits:
            part = _Components([x[i] for i in fit_idx], emb[fit_idx], y[fit_idx], len(label_list),
                               in_scope[fit_idx], config, seed)
            oof_p[held_idx], oof_near[held_idx] = part.probabilities([x[i] for i in held_idx], emb[held_idx])
        log_p = np.log(np.clip(oof_p, _EPS, None))
        temperature = _fit_temperature(log_p, y)
        novelty_floor = float(np.quantile(oof_near[in_scope], config.novelty_quantile))

        components = _Components(x, emb, y, len(label_list), in_scope, config, seed)
        model = cls(label_list, components, temperature, novelty_floor, info={}, calibration_oos=np.zeros(0),
                    encoder=encoder)
        oof = model._decide(_softmax_with_temperature(log_p, temperature), oof_near)
        oof_intent = np.where(oof["is_oos"], OUT_OF_SCOPE, np.array(intents)[oof["best_intent"]])
        true = np.array([label for _, label in pairs])
        model.calibration_oos = np.where(oof["is_oos"], -np.inf, oof["confidence"])[~in_scope]
        model.info = {
            "format_version": FORMAT_VERSION,
            "encoder": encoder.name,
            "encoder_version": encoder.version,
            "sklearn_version": _sklearn_version(),
            "seed": seed,
            "config": asdict(config),
            "n_train": int(in_scope.sum()),
            "n_out_of_scope": int((~in_scope).sum()),
            "n_labels": len(label_list),
            "training_fingerprint": fingerprint_training_data(all_texts, all_labels),
            "temperature": temperature,
            "novelty_floor": novelty_floor,
            "folds": folds,
            "oof_accuracy_in_scope": float((oof_intent == true)[in_scope].mean()),
            "oof_out_of_scope_recall": float(oof["is_oos"][~in_scope].mean()) if has_oos else None,
            "encode_seconds": round(encode_seconds, 3),
            "training_seconds": round(time.perf_counter() - started, 3),
        }
        return model

    # ---------------------------------------------------------------- inference

    def _decide(self, calibrated: np.ndarray, nearest_in: np.ndarray) -> dict[str, np.ndarray]:
        n_intents = len(self.intents)
        best = calibrated[:, :n_intents].argmax(axis=1)
        p_best = calibrated[np.arange(len(best)), best]
        p_oos = calibrated[:, n_intents] if len(self.labels) > n_intents else np.zeros(len(best))
        is_oos = (p_oos > p_best) | (nearest_in < self.novelty_floor)
        confidence = np.where(is_oos, 1.0 - p_best, p_best)
        return {"best_intent": best, "confidence": confidence, "is_oos": is_oos}

    def predict_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities over `self.labels` (n, labels) and nearest in-scope cosine."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels))), np.zeros(0)
        emb = self.encoder.encode(texts)
        raw, nearest = self._components.probabilities(texts, emb)
        calibrated = _softmax_with_temperature(np.log(np.clip(raw, _EPS, None)), self.temperature)
        return calibrated, nearest

    def predict(self, texts: Sequence[str], top_k: int = 3) -> list[Prediction]:
        calibrated, nearest = self.predict_proba(texts)
        if len(calibrated) == 0:
            return []
        d = self._decide(calibrated, nearest)
        order = np.argsort(-calibrated, axis=1, kind="stable")[:, :top_k]
        out = []
        for i in range(len(calibrated)):
            oos = bool(d["is_oos"][i])
            conf = float(d["confidence"][i])
            out.append(Prediction(
                intent=OUT_OF_SCOPE if oos else self.labels[d["best_intent"][i]],
                confidence=conf,
                is_out_of_scope=oos,
                automated=(not oos) and self.threshold is not None and conf >= self.threshold,
                top_k=tuple((self.labels[j], float(calibrated[i, j])) for j in order[i]),
            ))
        return out

    def automatable_confidences(self, predictions: Sequence[Prediction]) -> np.ndarray:
        """Confidence of in-scope answers, -inf for out-of-scope ones (never automated)."""
        return np.array([-np.inf if p.is_out_of_scope else p.confidence for p in predictions])

    # ---------------------------------------------------------------- threshold

    def select_threshold(self, texts: Sequence[str], labels: Sequence[str], target: float = 0.98, *,
                         oos_share: float | None = 0.05,
                         max_oos_automated: float | None = None,
                         guarantee_level: float | None = None,
                         guarantee_confidence: float = 0.95) -> ThresholdResult:
        """Fix `self.threshold` on held-out labelled rows (the validation split).

        1. Point estimate: the lowest threshold at which the pool's automated rows reach
           `target` precision. The pool is the in-scope rows of `texts` plus every
           out-of-scope row: those labelled `out_of_scope`/`oos` in `labels` (e.g. a held-out
           calibration share of the CLINC material) and the out-of-fold answers for the
           training out-of-scope messages (unseen by the models that answered them). Any
           out-of-scope row the model would automate is an error. Together the out-of-scope
           rows are weighted to make up `oos_share` of the pool (the share of out-of-scope
           traffic assumed; None: one weight per row; 0: leave them out).
        2. `max_oos_automated`, if given, raises it until at most that share of the pool's
           out-of-scope rows would be automated.
        3. It is rounded up to the guarantee's grid, then raised to at least the threshold
           the fixed-sequence Clopper-Pearson test certifies for `guarantee_level` (default:
           `target`) at `guarantee_confidence` on the in-scope rows of `texts`, each row
           counting once (see `guarantee.py`): with that confidence, the in-scope messages
           automated at the final threshold are at least `guarantee_level` precise on
           traffic drawn like those rows. If no threshold is certified, the point estimate
           stands and `threshold_info["guarantee"]["holds"]` is False.
        """
        if oos_share is not None and not 0.0 <= oos_share < 1.0:
            raise ValueError("oos_share must be in [0, 1)")
        level = target if guarantee_level is None else guarantee_level
        predictions = self.predict(texts, top_k=1)
        truth = [OUT_OF_SCOPE if is_out_of_scope_label(lab) else lab for lab in labels]
        if len(truth) != len(predictions):
            raise ValueError(f"{len(predictions)} texts but {len(truth)} labels")
        labelled_oos = np.array([t == OUT_OF_SCOPE for t in truth], dtype=bool)
        conf_all = self.automatable_confidences(predictions).reshape(-1)
        correct_all = np.array([(not p.is_out_of_scope) and p.intent == t
                                for p, t in zip(predictions, truth, strict=True)], dtype=bool)
        in_conf, in_correct = conf_all[~labelled_oos], correct_all[~labelled_oos]
        pool = self.calibration_oos if oos_share != 0.0 else self.calibration_oos[:0]
        oos_conf = np.concatenate([conf_all[labelled_oos], pool]) if oos_share != 0.0 else np.zeros(0)
        oos_weight = 1.0
        if oos_share is not None and len(oos_conf) and len(in_conf):
            oos_weight = oos_share / (1.0 - oos_share) * len(in_conf) / len(oos_conf)
        conf = np.concatenate([in_conf, oos_conf])
        correct = np.concatenate([in_correct, np.zeros(len(oos_conf), dtype=bool)])
        weights = np.concatenate([np.ones(len(in_conf)), np.full(len(oos_conf), oos_weight)])
        point = threshold_for_precision(conf, correct, target, weights=weights)
        chosen = point.threshold
        oos_rule = None
        if max_oos_automated is not None and len(oos_conf):
            finite = np.sort(oos_conf[np.isfinite(oos_conf)])[::-1]
            allowed = int(math.floor(max_oos_automated * len(oos_conf)))
            if len(finite) > allowed:
                # Strictly above the (allowed+1)-th highest out-of-scope confidence.
                oos_rule = float(np.nextafter(finite[allowed], np.inf))
                chosen = max(chosen, oos_rule)
        guarantee = certify(in_conf, in_correct, level, guarantee_confidence)
        # Without a certified threshold (too little evidence: a small model, a small split)
        # the point estimate stands and the model states no guarantee (`holds` False).
        threshold = grid_ceiling(chosen)
        if math.isfinite(guarantee.guaranteed_threshold):
            threshold = max(threshold, guarantee.guaranteed_threshold)
        automated = conf >= threshold
        n_auto = int(automated.sum())
        result = ThresholdResult(
            threshold, float(weights[automated].sum() / weights.sum()) if len(conf) else 0.0,
            float((weights * correct)[automated].sum() / weights[automated].sum()) if n_auto else None,
            target, len(conf), n_auto)
        in_auto = in_conf >= threshold
        k_in, n_in = int(in_correct[in_auto].sum()), int(in_auto.sum())
        self.threshold = result.threshold
        self.threshold_info = {**result.as_dict(), "n_validation": len(truth),
                               "n_validation_out_of_scope": int(labelled_oos.sum()),
                               "n_training_oos_pool": len(pool), "oos_share": oos_share,
                               "oos_pool_weight": oos_weight,
                               "point_threshold": point.threshold,
                               "max_oos_automated": max_oos_automated, "oos_rule_threshold": oos_rule,
                               "guarantee": {**guarantee.as_dict(), "holds": guarantee.holds_at(threshold),
                                             "in_scope_automated": n_in, "in_scope_automated_correct": k_in,
                                             "precision_lower_bound_at_threshold":
                                                 round(lower_bound(k_in, n_in, guarantee_confidence), 6)}}
        return result

    # ---------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model with joblib (uncompressed), atomically; the sentence encoder is not saved with it."""
        import joblib

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format_version": FORMAT_VERSION,
            "labels": self.labels,
            "components": self._components,
            "temperature": self.temperature,
            "novelty_floor": self.novelty_floor,
            "info": self.info,
            "calibration_oos": self.calibration_oos,
            "threshold": self.threshold,
            "threshold_info": self.threshold_info,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            # Uncompressed: zlib saved 18% of the file but made loading 18 times slower (1.03 s
            # against 0.057 s for the shipped configuration), in every process that serves.
            joblib.dump(state, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: TextEncoder | None = None) -> IntentModel:
        """Read a saved model; the encoder named in it must be the one given (default MiniLM)."""
        import joblib

        try:
            state = joblib.load(Path(path))
        except AttributeError as exc:  # a pickled class this code no longer has
            if "_TunedTop" in str(exc):
                raise ValueError(f"{path} has fine-tuned encoder layers, which this version cannot serve "
                                 "(encoder fine-tuning was removed): retrain it") from exc
            raise
        if not isinstance(state, dict) or state.get("format_version") not in _READABLE_FORMATS:
            raise ValueError(f"{path}: not an intent model of format {_READABLE_FORMATS}")
        encoder = encoder or default_encoder()
        if state["info"].get("encoder") != encoder.name:
            raise ValueError(f"{path} was trained with encoder {state['info'].get('encoder')!r}, "
                             f"not {encoder.name!r}")
        trained_with = state["info"].get("encoder_version")  # None: before versions were recorded
        if not encoder.accepts(trained_with):
            shown = repr(trained_with) if trained_with else "unrecorded (an encoder before versions)"
            raise ValueError(f"{path} was trained with {encoder.name} version {shown}, which this "
                             f"installation's encoder ({encoder.version!r}) does not reproduce: retrain it "
                             "(materialize intent_model, i.e. run model_training_job)")
        model = cls(state["labels"], state["components"], state["temperature"], state["novelty_floor"],
                    state["info"], state["calibration_oos"], encoder=encoder)
        model.threshold = state["threshold"]
        model.threshold_info = state["threshold_info"]
        return model


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


# --------------------------------------------------------------------------- evaluation


def evaluate(model: IntentModel, texts: Sequence[str], labels: Sequence[str], *,
             threshold: float | None = None, target: float = 0.98) -> dict[str, Any]:
    """Metrics of `model` on labelled rows; `out_of_scope`/`oos` rows must not be automated.

    accuracy                 share of rows answered right (out-of-scope rows: answered out_of_scope)
    in_scope_accuracy        the same over in-scope rows only
    macro_f1                 macro F1 over the labels present in `labels`
    automated_share          rows automated at the threshold (the model's unless given)
    automated_precision      automated rows answered right
    in_scope_coverage        in-scope rows automated
    out_of_scope_automated   out-of-scope rows automated (None without such rows)
    out_of_scope_recall      out-of-scope rows answered out_of_scope
    in_scope_flagged_out_of_scope   in-scope rows answered out_of_scope
    coverage_at_target       coverage this set itself would allow at `target` precision (oracle)
    ece                      expected calibration error of `confidence` (10 bins, all rows)
    """
    from sklearn.metrics import f1_score

    threshold = model.threshold if threshold is None else threshold
    truth = np.array([OUT_OF_SCOPE if is_out_of_scope_label(lab) else lab for lab in labels])
    predictions = model.predict(texts, top_k=1)
    pred = np.array([p.intent for p in predictions])
    is_oos_pred = np.array([p.is_out_of_scope for p in predictions], dtype=bool)
    conf = np.array([p.confidence for p in predictions])
    right = pred == truth
    oos_rows = truth == OUT_OF_SCOPE
    auto_conf = np.where(is_oos_pred, -np.inf, conf)
    automated = (auto_conf >= threshold) if threshold is not None else np.zeros(len(truth), dtype=bool)
    n = len(truth)

    def share(mask: np.ndarray) -> float | None:
        return float(mask.mean()) if len(mask) else None

    oracle = threshold_for_precision(auto_conf, right & ~oos_rows, target) if n else None
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = float(sum(abs(right[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
                    for b in range(10) if (bins == b).any())) if n else None
    return {
        "n": n,
        "n_in_scope": int((~oos_rows).sum()),
        "n_out_of_scope": int(oos_rows.sum()),
        "accuracy": share(right),
        "in_scope_accuracy": share(right[~oos_rows]),
        "macro_f1": float(f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0))
        if n else None,
        "threshold": threshold,
        "automated_share": share(automated),
        "automated_precision": float(right[automated].mean()) if automated.any() else None,
        "in_scope_coverage": share(automated[~oos_rows]),
        "out_of_scope_automated": share(automated[oos_rows]),
        "out_of_scope_recall": share(is_oos_pred[oos_rows]),
        "in_scope_flagged_out_of_scope": share(is_oos_pred[~oos_rows]),
        "coverage_at_target": oracle.coverage if oracle else None,
        "target_precision": target,
        "ece": ece,
    }
