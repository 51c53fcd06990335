"""Quality of a day's answers: realised against late labels, estimated before they arrive.

Realised figures come from a day's enriched rows (ENRICHED_COLUMNS) and the resolved-cases
labels (ingestion/resolved_cases.py), which may be absent or partial. Every rate is a Wilson
`Proportion`, so a day with 12 labels does not look as precise as one with 1,200, and the
judgements decide on the interval, never on the point.

What counts as a model prediction
    Every row whose answer came from a classifying tier — the local model, a Claude tier, the
    keyword rules — counts. Rows the cascade handed to a person (tier `human`, intent
    `needs_human`: no tier could answer) are *not* predictions: they carry no answer to be right
    or wrong about. They are counted (`handed_to_human`) and stay in the denominators that are
    about the day (the labelled share) but not in accuracy or macro-F1. A model that hands
    everything to people is then visible as a collapse of `model_predictions`, not as a fall in
    accuracy. An `out_of_scope` answer is a prediction: right when the agent's label is
    `out_of_scope` too.

    accuracy               correct / labelled predictions
    macro_f1               sklearn's macro F1 over the labelled predictions, averaged over the
                           labels present among the agents' labels (as `intent_model.evaluate`)
    automated_precision    correct / labelled automated rows (every automated row, any tier:
                           the target precision is the promise made for automated actions)
    out_of_scope_automated automated / rows labelled `out_of_scope` (should be ~0)
    labelled_share         labelled rows / all rows (predictions or not)

The estimate before labels (the idea of NannyML's CBPE)
    A calibrated confidence p is the probability the answer is right, so the expected accuracy
    of n answers is mean(p), and the number right is Poisson-binomial with variance Σp(1−p).
    The interval is that distribution's central 95% range, computed exactly by convolution up to
    `EXACT_POISSON_BINOMIAL_MAX_ROWS` rows and by its normal approximation (mean ± z·√Σp(1−p))
    beyond, where the approximation is excellent. It is the range the realised accuracy should
    fall in *if the model is still calibrated*: it expresses sampling noise, not doubt about the
    calibration itself — that is exactly what the gap judgement tests once labels come.

    Coverage: only the local model's confidences are calibrated (temperature fitted out of
    fold); an LLM states its own confidence and keyword rules a constant, so those rows are not
    estimated. Nor are the local model's `out_of_scope` answers: their confidence is
    1 − p(best intent), the probability that the best *intent* is wrong, which is not the
    probability that "out of scope" is right. The estimate covers the local model's in-scope
    answers and says what share of the day's predictions that is (`coverage`).

    Once labels come, the estimate is recomputed on the covered rows that are labelled and shown
    beside the realised accuracy of those same rows, with the gap (realised − expected): partial
    labels are rarely a random sample (reviewed, unsure messages are resolved first), so
    comparing the day's estimate with a subset's realised figure would show a gap that is only
    selection.

Judgements (`Judgement`: passed, status ok | fail | insufficient_data, a one-line description
with the figures, JSON-able metadata). Fewer than `min_labelled` rows behind a figure gives
`insufficient_data`, which passes: no evidence of a problem is not evidence of one, and the
status says why nothing was judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import f1_score

from ai_assets.ingestion.resolved_cases import match_labels
from ai_assets.monitoring.intervals import CONFIDENCE, Proportion
from ai_assets.serving.intent.automation import HUMAN_TIER, LOCAL_TIER, NEEDS_HUMAN
from ai_assets.serving.intent.out_of_scope import OUT_OF_SCOPE

# Fewer labelled rows than this behind a figure and a judgement says insufficient_data. At 30 a
# Wilson interval around 0.8 is still ±0.14 wide, so only a large drop fails; the interval rule,
# not this floor, is what keeps small days from alerting on noise.
MIN_LABELLED = 30
# The per-intent breakdown in metadata: intents with at least this many labels, worst first.
MIN_INTENT_ROWS = 10
TOP_INTENTS = 15
# Exact Poisson-binomial convolution is O(n²) (0.1 s at 10,000 rows); the normal approximation
# beyond that is within a row or two of it.
EXACT_POISSON_BINOMIAL_MAX_ROWS = 10_000
DIGITS = 4

OK, FAIL, INSUFFICIENT_DATA = "ok", "fail", "insufficient_data"


# --------------------------------------------------------------------------- row selection


def prediction_mask(enriched: pd.DataFrame) -> np.ndarray:
    """Rows that carry a model's answer: everything except what the cascade handed to a person."""
    return ((enriched["tier"].astype(str) != HUMAN_TIER) & (enriched["intent"].astype(str) != NEEDS_HUMAN)).to_numpy()


def estimate_mask(enriched: pd.DataFrame) -> np.ndarray:
    """Rows whose confidence is a calibrated probability of being right: the local model's
    in-scope answers with a confidence in [0, 1]."""
    confidence = pd.to_numeric(enriched["confidence"], errors="coerce").to_numpy(dtype=float)
    intent = enriched["intent"].astype(str)
    return ((enriched["tier"].astype(str) == LOCAL_TIER).to_numpy()
            & (intent != OUT_OF_SCOPE).to_numpy() & (intent != NEEDS_HUMAN).to_numpy()
            & np.isfinite(confidence) & (confidence >= 0) & (confidence <= 1))


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class AccuracyEstimate:
    """Expected accuracy of `rows` answers from their calibrated confidences, with the central
    interval of the Poisson-binomial number right; `eligible` is the predictions it was drawn
    from, so `coverage` says how much of the day it speaks for."""

    rows: int
    eligible: int
    expected_correct: float  # Σp
    variance: float  # Σp(1−p), of the number right
    low: float  # accuracy
    high: float
    method: str  # poisson_binomial_exact | normal_approximation | none
    confidence: float = CONFIDENCE

    @property
    def value(self) -> float | None:
        return self.expected_correct / self.rows if self.rows else None

    @property
    def coverage(self) -> float | None:
        return self.rows / self.eligible if self.eligible else None

    def contains(self, accuracy: float | None) -> bool | None:
        return None if accuracy is None or not self.rows else self.low - 1e-12 <= accuracy <= self.high + 1e-12

    def to_dict(self, digits: int = DIGITS) -> dict[str, Any]:
        value, coverage = self.value, self.coverage
        return {"value": None if value is None else round(value, digits), "low": round(self.low, digits),
                "high": round(self.high, digits), "rows": self.rows, "eligible": self.eligible,
                "coverage": None if coverage is None else round(coverage, digits), "method": self.method}


def poisson_binomial_interval(probabilities: np.ndarray, confidence: float = CONFIDENCE) -> tuple[int, int, str]:
    """Central interval (k_low, k_high) of the number of successes of independent Bernoulli(p_i):
    k_low the smallest k with P(K <= k) >= α/2, k_high the smallest with P(K <= k) >= 1 − α/2 (the
    convention of scipy's binom.interval, which it equals when all p_i are equal)."""
    p = np.asarray(probabilities, dtype=float)
    n = len(p)
    alpha = 1 - confidence
    if n == 0:
        return 0, 0, "none"
    if n > EXACT_POISSON_BINOMIAL_MAX_ROWS:
        z = float(norm.ppf(1 - alpha / 2))
        mean, sd = float(p.sum()), math.sqrt(float((p * (1 - p)).sum()))
        return max(0, math.floor(mean - z * sd)), min(n, math.ceil(mean + z * sd)), "normal_approximation"
    pmf = np.zeros(n + 1)
    pmf[0] = 1.0
    for i, pi in enumerate(p):  # add one trial: K' = K + Bernoulli(pi)
        pmf[1:i + 2] = pmf[1:i + 2] * (1 - pi) + pmf[:i + 1] * pi
        pmf[0] *= 1 - pi
    cdf = np.cumsum(pmf)
    tolerance = 1e-10  # cumulative rounding must not move a quantile by one
    low = int(np.searchsorted(cdf, alpha / 2 - tolerance, side="left"))
    high = int(np.searchsorted(cdf, 1 - alpha / 2 - tolerance, side="left"))
    return min(low, n), min(high, n), "poisson_binomial_exact"


def estimate_accuracy(confidences: np.ndarray | list[float], eligible: int | None = None,
                      confidence: float = CONFIDENCE) -> AccuracyEstimate:
    """The CBPE-style estimate from calibrated confidences (see the module docstring)."""
    p = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    n = len(p)
    k_low, k_high, method = poisson_binomial_interval(p, confidence)
    return AccuracyEstimate(rows=n, eligible=n if eligible is None else eligible,
                            expected_correct=float(p.sum()), variance=float((p * (1 - p)).sum()),
                            low=k_low / n if n else 0.0, high=k_high / n if n else 1.0, method=method,
                            confidence=confidence)


def day_estimate(enriched: pd.DataFrame) -> AccuracyEstimate:
    """The estimate for a day whose labels have not arrived: every covered row, labelled or not."""
    covered = estimate_mask(enriched)
    confidence = pd.to_numeric(enriched["confidence"], errors="coerce").to_numpy(dtype=float)
    return estimate_accuracy(confidence[covered], eligible=int(prediction_mask(enriched).sum()))


@dataclass(frozen=True)
class EstimateComparison:
    """The estimate on the covered rows that have labels, beside their realised accuracy."""

    estimate: AccuracyEstimate
    realised: Proportion

    @property
    def gap(self) -> float | None:
        """realised − expected: negative when the model does worse than its confidences promise."""
        if self.realised.value is None or self.estimate.value is None:
            return None
        return self.realised.value - self.estimate.value

    def to_dict(self, digits: int = DIGITS) -> dict[str, Any]:
        gap = self.gap
        return {"rows": self.realised.n, "expected": self.estimate.to_dict(digits),
                "realised": self.realised.to_dict(digits), "gap": None if gap is None else round(gap, digits),
                "realised_within_expected_interval": self.estimate.contains(self.realised.value)}


# --------------------------------------------------------------------------- realised figures


@dataclass(frozen=True)
class SliceQuality:
    """Realised figures of one slice of a day (all of it, one model, one tier)."""

    rows: int
    model_predictions: int
    handed_to_human: int
    automated: int
    labelled_share: Proportion
    accuracy: Proportion
    macro_f1: float | None
    automated_precision: Proportion
    out_of_scope_automated: Proportion

    def to_dict(self, digits: int = DIGITS) -> dict[str, Any]:
        return {"rows": self.rows, "model_predictions": self.model_predictions,
                "handed_to_human": self.handed_to_human, "automated": self.automated,
                "labelled_share": self.labelled_share.to_dict(digits), "accuracy": self.accuracy.to_dict(digits),
                "macro_f1": None if self.macro_f1 is None else round(self.macro_f1, digits),
                "automated_precision": self.automated_precision.to_dict(digits),
                "out_of_scope_automated": self.out_of_scope_automated.to_dict(digits)}

    def to_compact(self, digits: int = DIGITS) -> dict[str, Any]:
        """The breakdown form: counts, the accuracy and the automated precision."""
        return {"rows": self.rows, "model_predictions": self.model_predictions, "labelled": self.accuracy.n,
                "accuracy": self.accuracy.to_dict(digits),
                "macro_f1": None if self.macro_f1 is None else round(self.macro_f1, digits),
                "automated": self.automated, "automated_precision": self.automated_precision.to_dict(digits)}


@dataclass(frozen=True)
class IntentQuality:
    """One intent (the agents' label): how often messages of it were answered right (recall),
    and how often answers of it were right (precision), over labelled predictions."""

    intent: str
    recall: Proportion
    precision: Proportion

    def to_dict(self, digits: int = DIGITS) -> dict[str, Any]:
        return {"intent": self.intent, "labelled": self.recall.n, "recall": self.recall.to_dict(digits),
                "precision": self.precision.to_dict(digits)}


@dataclass(frozen=True)
class _Rows:
    """A day's rows as arrays, with the label per row (None where it has none)."""

    intent: np.ndarray
    label: np.ndarray  # object: str or None
    automated: np.ndarray
    predicted: np.ndarray
    covered: np.ndarray

    @property
    def labelled(self) -> np.ndarray:
        return np.array([lab is not None for lab in self.label], dtype=bool)


def _slice(rows: _Rows, mask: np.ndarray) -> SliceQuality:
    labelled = rows.labelled & mask
    scored = labelled & rows.predicted
    correct = scored & (rows.intent == rows.label)
    automated = mask & rows.automated
    labelled_automated = automated & labelled
    oos_labelled = labelled & (rows.label == OUT_OF_SCOPE)
    macro_f1 = None
    if scored.any():
        truth, predicted = rows.label[scored].astype(str), rows.intent[scored].astype(str)
        macro_f1 = float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0))
    return SliceQuality(
        rows=int(mask.sum()), model_predictions=int((mask & rows.predicted).sum()),
        handed_to_human=int((mask & ~rows.predicted).sum()), automated=int(automated.sum()),
        labelled_share=Proportion(int(labelled.sum()), int(mask.sum())),
        accuracy=Proportion(int(correct.sum()), int(scored.sum())),
        macro_f1=macro_f1,
        automated_precision=Proportion(int((labelled_automated & (rows.intent == rows.label)).sum()),
                                       int(labelled_automated.sum())),
        out_of_scope_automated=Proportion(int((oos_labelled & rows.automated).sum()), int(oos_labelled.sum())))


def _per_intent(rows: _Rows) -> list[IntentQuality]:
    scored = rows.labelled & rows.predicted
    truth, predicted = rows.label[scored].astype(str), rows.intent[scored].astype(str)
    out = []
    for intent in sorted(set(truth)):
        of_intent, answered = truth == intent, predicted == intent
        out.append(IntentQuality(intent, Proportion(int((of_intent & answered).sum()), int(of_intent.sum())),
                                 Proportion(int((of_intent & answered).sum()), int(answered.sum()))))
    # Worst first; a tie goes to the intent with more labels (the surer figure), then by name.
    return sorted(out, key=lambda q: (q.recall.value, -q.recall.n, q.intent))


@dataclass(frozen=True)
class QualityReport:
    """A day's quality: overall, per model and per tier, per intent, and the estimate."""

    overall: SliceQuality
    by_model: dict[str, SliceQuality]  # answered_by: the model version or name that answered
    by_tier: dict[str, SliceQuality]
    by_intent: list[IntentQuality]  # every labelled intent, worst recall first
    estimate: AccuracyEstimate  # the day's, labels or not
    comparison: EstimateComparison | None  # None until a covered row has a label
    local_model_versions: list[str]
    labels_in: int  # labels given for the day
    labels_unknown: int  # of those, ids that are not among the day's rows (counted, not used)

    def to_metadata(self, min_intent_rows: int = MIN_INTENT_ROWS, top_intents: int = TOP_INTENTS,
                    digits: int = DIGITS) -> dict[str, Any]:
        """JSON-able, rounded; the per-intent list keeps only intents with at least
        `min_intent_rows` labels, the `top_intents` worst of them, and says how many it left out."""
        intents = [q for q in self.by_intent if q.recall.n >= min_intent_rows]
        return {
            **self.overall.to_dict(digits),
            "labels_in": self.labels_in, "labels_unknown": self.labels_unknown,
            "local_model_versions": self.local_model_versions,
            "estimate": self.estimate.to_dict(digits),
            "estimate_vs_realised": None if self.comparison is None else self.comparison.to_dict(digits),
            "by_model": {name: s.to_compact(digits) for name, s in self.by_model.items()},
            "by_tier": {name: s.to_compact(digits) for name, s in self.by_tier.items()},
            "by_intent": [q.to_dict(digits) for q in intents[:top_intents]],
            "by_intent_min_labelled": min_intent_rows,
            "by_intent_left_out": len(self.by_intent) - min(len(intents), top_intents),
        }


def _label_map(labels: pd.DataFrame | Mapping[str, str] | None) -> dict[str, str]:
    if labels is None:
        return {}
    if isinstance(labels, pd.DataFrame):
        ids = labels["message_id"].astype(str)
        if ids.duplicated().any():  # the feed keeps one label per id; two here is a wiring bug
            raise ValueError(f"labels hold {int(ids.duplicated().sum())} repeated message id(s): "
                             "pass the feed's resolved labels (one per id)")
        return dict(zip(ids, labels["category"].astype(str), strict=True))
    return {str(k): str(v) for k, v in labels.items()}


def quality_report(enriched: pd.DataFrame, labels: pd.DataFrame | Mapping[str, str] | None = None) -> QualityReport:
    """Realised figures and the estimate for one day.

    `enriched`: the day's enriched_messages (ENRICHED_COLUMNS; at least message_id, intent,
    confidence, automated, tier, answered_by, local_model_version). `labels`: the resolved
    labels (a frame with message_id and category, e.g. `ResolvedFeed.labels`, or a mapping), any
    subset of the day, or None before they arrive. Labels of ids not in `enriched` are counted
    in `labels_unknown` and not used.
    """
    mapping = _label_map(labels)
    ids = enriched["message_id"].astype(str)
    label_frame = pd.DataFrame({"message_id": list(mapping), "category": list(mapping.values())})
    matched = match_labels(label_frame, ids)
    confidence = pd.to_numeric(enriched["confidence"], errors="coerce").to_numpy(dtype=float)
    rows = _Rows(
        intent=enriched["intent"].astype(str).to_numpy(dtype=object),
        label=np.array([mapping.get(m) for m in ids], dtype=object),
        automated=enriched["automated"].astype("boolean").fillna(False).to_numpy(dtype=bool),
        predicted=prediction_mask(enriched), covered=estimate_mask(enriched))
    everything = np.ones(len(enriched), dtype=bool)
    answered_by = enriched["answered_by"].astype(str).to_numpy()
    tiers = enriched["tier"].astype(str).to_numpy()
    compared = rows.covered & rows.labelled
    comparison = None
    if compared.any():
        comparison = EstimateComparison(
            estimate_accuracy(confidence[compared], eligible=int((rows.predicted & rows.labelled).sum())),
            Proportion(int((compared & (rows.intent == rows.label)).sum()), int(compared.sum())))
    return QualityReport(
        overall=_slice(rows, everything),
        by_model={name: _slice(rows, answered_by == name) for name in sorted(set(answered_by))},
        by_tier={name: _slice(rows, tiers == name) for name in sorted(set(tiers))},
        by_intent=_per_intent(rows),
        estimate=estimate_accuracy(confidence[rows.covered], eligible=int(rows.predicted.sum())),
        comparison=comparison,
        local_model_versions=sorted(set(enriched["local_model_version"].astype(str))),
        labels_in=len(mapping), labels_unknown=len(matched.unknown))


# --------------------------------------------------------------------------- judgements


@dataclass(frozen=True)
class Judgement:
    """What an asset check reports: passed (False only for `fail`), the status, one line with
    the figures, and JSON-able metadata."""

    name: str
    passed: bool
    status: str  # ok | fail | insufficient_data
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _interval(p: Proportion) -> str:
    low, high = p.interval
    return f"{_pct(p.value)} [{_pct(low)}, {_pct(high)}] of {p.n}"


def _insufficient(name: str, what: str, n: int, min_labelled: int, metadata: dict) -> Judgement:
    return Judgement(name, True, INSUFFICIENT_DATA,
                     f"{what}: {n} labelled row(s), fewer than the {min_labelled} needed to judge",
                     {**metadata, "min_labelled": min_labelled})


def judge_automated_precision(precision: Proportion, target: float,
                              min_labelled: int = MIN_LABELLED) -> Judgement:
    """Fails only when even the interval's upper bound is below the model's target precision:
    the automated decisions are then worse than promised beyond reasonable doubt."""
    name = "automated_precision"
    metadata = {"precision": precision.to_dict(), "target": round(target, DIGITS)}
    if precision.n < min_labelled:
        return _insufficient(name, "automated precision", precision.n, min_labelled, metadata)
    high = precision.interval[1]
    passed = high >= target
    verdict = "reaches" if passed else "is below"
    return Judgement(name, passed, OK if passed else FAIL,
                     f"automated precision {_interval(precision)}: upper bound {verdict} the target {_pct(target)}",
                     {**metadata, "rule": "fail when the Wilson upper bound < target", "min_labelled": min_labelled})


def judge_accuracy(accuracy: Proportion, validation_accuracy: float, margin: float,
                   min_labelled: int = MIN_LABELLED) -> Judgement:
    """Fails when the interval's upper bound is more than `margin` below the accuracy measured on
    the validation split: live traffic is then clearly worse than what the model was promoted on."""
    name = "realised_accuracy"
    floor = validation_accuracy - margin
    metadata = {"accuracy": accuracy.to_dict(), "validation_accuracy": round(validation_accuracy, DIGITS),
                "margin": round(margin, DIGITS), "floor": round(floor, DIGITS)}
    if accuracy.n < min_labelled:
        return _insufficient(name, "realised accuracy", accuracy.n, min_labelled, metadata)
    high = accuracy.interval[1]
    passed = high >= floor
    verdict = "reaches" if passed else "is below"
    return Judgement(name, passed, OK if passed else FAIL,
                     f"realised accuracy {_interval(accuracy)}: upper bound {verdict} validation "
                     f"{_pct(validation_accuracy)} - margin {_pct(margin)} = {_pct(floor)}",
                     {**metadata, "rule": "fail when the Wilson upper bound < validation accuracy - margin",
                      "min_labelled": min_labelled})


def judge_estimate_gap(comparison: EstimateComparison | None, margin: float,
                       min_labelled: int = MIN_LABELLED) -> Judgement:
    """Fails when the realised accuracy's whole interval lies more than `margin` from the estimate
    on the same rows (either side): the confidences no longer mean what they say — concept drift
    or a calibration break — and the estimates of unlabelled days cannot be trusted."""
    name = "estimate_gap"
    if comparison is None:
        return _insufficient(name, "estimate vs realised", 0, min_labelled, {"margin": round(margin, DIGITS)})
    metadata = {**comparison.to_dict(), "margin": round(margin, DIGITS)}
    realised = comparison.realised
    if realised.n < min_labelled:
        return _insufficient(name, "estimate vs realised", realised.n, min_labelled, metadata)
    expected = comparison.estimate.value
    low, high = realised.interval
    below, above = high < expected - margin, low > expected + margin
    passed = not (below or above)
    where = "within" if passed else ("below" if below else "above")
    gap = comparison.gap
    return Judgement(name, passed, OK if passed else FAIL,
                     f"realised {_interval(realised)} vs estimated {_pct(expected)} "
                     f"[{_pct(comparison.estimate.low)}, {_pct(comparison.estimate.high)}]: gap {gap:+.1%}, "
                     f"interval {where} the estimate ± {_pct(margin)}",
                     {**metadata, "rule": "fail when the realised Wilson interval lies entirely outside "
                                          "estimate ± margin", "min_labelled": min_labelled})


__all__ = ["EXACT_POISSON_BINOMIAL_MAX_ROWS", "FAIL", "INSUFFICIENT_DATA", "MIN_INTENT_ROWS", "MIN_LABELLED", "OK",
           "TOP_INTENTS", "AccuracyEstimate", "EstimateComparison", "IntentQuality", "Judgement", "QualityReport",
           "SliceQuality", "day_estimate", "estimate_accuracy", "estimate_mask", "judge_accuracy",
           "judge_automated_precision", "judge_estimate_gap", "poisson_binomial_interval", "prediction_mask",
           "quality_report"]
