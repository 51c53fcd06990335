"""Input and prediction drift of one day against a reference, with what moved.

A `DriftReference` is built once from a reference sample: the training texts (+ validation) and
the model's outputs on its validation split for the training reference, or the trailing days'
enriched messages for the trailing-window reference (`DriftReference.build(DriftSample.concat(
[DriftSample.from_frame(df) for df in trailing_frames]))`). `compare` tests each feature of a day
against it and returns a `DriftResult`: "ok", "drift" (a WARN by default; the Dagster wiring can
make it blocking) or "insufficient_data".

Decision rule, per kind ("inputs" or "outputs"): a feature drifts when its test's p-value is below
family_alpha / (number of features tested) — Bonferroni, so one day's chance of any false alarm in
that kind is at most family_alpha — AND its effect size reaches the feature's floor, so a huge day
does not alarm on a shift too small to matter. Thresholds and the false-alarm rates they were
chosen from: docs/drift.md (measured by benchmarks/drift_detection.py).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np

from ai_assets.monitoring import drift_features as features
from ai_assets.monitoring import drift_statistics as stats

Kind = Literal["inputs", "outputs"]
Status = Literal["ok", "drift", "insufficient_data"]
OUT_OF_SCOPE_LABELS = frozenset({"out_of_scope", "oos"})
FORMAT_VERSION = 1

# Below this many messages a day is not judged: the novelty test expects one novel message in 100,
# and chi-square on the intent mix pools most of the 77 intents away (docs/drift.md, "Limits").
MIN_SAMPLE = 100
# The novelty index and the domain classifier see at most this many messages per side (a seeded
# random subsample): enough to detect a 5% mix with certainty, and it caps the cost of a big day.
MAX_TEXTS = 5000
EXAMPLE_CHARS = 160
EXAMPLES = 5


@dataclass(frozen=True)
class DriftThresholds:
    """family_alpha: chance of any false alarm per day and kind (Bonferroni over its features).
    novelty_quantile: a message is "novel" above the reference's own leave-one-out quantile.
    effect_floors: the smallest effect per feature worth a person's look (see `EFFECT_FLOORS`)."""

    family_alpha: float = 0.005
    novelty_quantile: float = 0.995
    effect_floors: Mapping[str, float] = field(default_factory=lambda: dict(EFFECT_FLOORS))


# Effect floors. Numeric: Wasserstein / reference std 0.1 and categorical: Jensen-Shannon distance
# 0.1 are Evidently's documented defaults for large samples; the rates are the smallest change an
# operator would act on. On 500-message days they never bind (the p-value does); they stop a
# 10,000-message day from alarming on a significant but negligible shift.
EFFECT_FLOORS: dict[str, float] = {
    "text_length": 0.1, "oov_rate": 0.01, "channel_mix": 0.1, "script_mix": 0.1,
    "novelty": 0.01, "domain_classifier": 0.0,
    "intent_distribution": 0.1, "confidence": 0.1, "out_of_scope_rate": 0.02,
    "tier_mix": 0.1, "automated_share": 0.03,
}
DEFAULT_THRESHOLDS = DriftThresholds()


def _tuple(values: Iterable | None) -> tuple | None:
    return None if values is None else tuple(values)


@dataclass(frozen=True)
class DriftSample:
    """One sample of messages: texts and channels (inputs), and optionally the pipeline's outputs."""

    texts: tuple[str, ...]
    channels: tuple[str, ...] | None = None
    intents: tuple[str, ...] | None = None
    confidences: tuple[float, ...] | None = None
    tiers: tuple[str, ...] | None = None
    automated: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("channels", "intents", "confidences", "tiers", "automated"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.texts):
                raise ValueError(f"{name} has {len(values)} values for {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_frame(cls, frame: Any) -> DriftSample:
        """From an enriched_messages-like DataFrame; absent output columns stay None (input-only)."""
        import pandas as pd

        def column(name: str, cast: type) -> tuple | None:
            if name not in frame.columns:
                return None
            # Missing values (None, NaN, pd.NA: a human-tier row has no confidence) stay None.
            return tuple(None if pd.isna(v) else cast(v) for v in frame[name].tolist())
        return cls(texts=tuple(str(t) for t in frame["text"].tolist()), channels=column("channel", str),
                   intents=column("intent", str), confidences=column("confidence", float),
                   tiers=column("tier", str), automated=column("automated", bool))

    @classmethod
    def from_predictions(cls, texts: Sequence[str], predictions: Sequence[Any], *,
                         channels: Sequence[str] | None = None, tiers: Sequence[str] | None = None) -> DriftSample:
        """The output reference: the model's answers (objects with .intent, .confidence, .automated,
        e.g. `IntentModel.predict`) on its *validation* split — on training texts it is overconfident.
        Without `tiers` the tier mix is only compared against trailing windows."""
        return cls(texts=tuple(texts), channels=_tuple(channels), intents=tuple(p.intent for p in predictions),
                   confidences=tuple(float(p.confidence) for p in predictions),
                   automated=tuple(bool(p.automated) for p in predictions), tiers=_tuple(tiers))

    @classmethod
    def concat(cls, samples: Sequence[DriftSample]) -> DriftSample:
        """Several days as one sample (a trailing window); a column survives only if every day has it."""
        def joined(name: str) -> tuple | None:
            parts = [getattr(s, name) for s in samples]
            return None if any(p is None for p in parts) else tuple(v for p in parts for v in p)
        return cls(texts=tuple(t for s in samples for t in s.texts), channels=joined("channels"),
                   intents=joined("intents"), confidences=joined("confidences"), tiers=joined("tiers"),
                   automated=joined("automated"))

    def subsample(self, limit: int, seed: int) -> DriftSample:
        """A seeded random subsample of at most `limit` messages, in original order."""
        if len(self) <= limit:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), limit, replace=False))
        def pick(values: tuple | None) -> tuple | None:
            return None if values is None else tuple(values[i] for i in keep)
        return DriftSample(pick(self.texts), pick(self.channels), pick(self.intents), pick(self.confidences),
                           pick(self.tiers), pick(self.automated))


def _counter(values: Iterable[str | None]) -> Counter[str]:
    return Counter("(missing)" if v is None else v for v in values)


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    return dict(sorted(_counter(values).items()))


def _share_of(flags: Sequence[bool | None]) -> tuple[int, int]:
    """(true, known): rows whose flag is missing are left out of the share."""
    known = [bool(f) for f in flags if f is not None]
    return sum(known), len(known)


@dataclass(frozen=True)
class DriftReference:
    """What a day is compared with. Holds the reference texts (for the novelty index and the domain
    classifier), the leave-one-out novelty scores (the expensive part, computed once) and the
    output distributions. JSON-able: `to_bytes()` / `from_bytes()`; everything else is re-derived."""

    texts: tuple[str, ...]
    novelty_loo: tuple[float, ...]
    channel_counts: dict[str, int] | None = None
    intent_counts: dict[str, int] | None = None
    confidences: tuple[float, ...] | None = None
    tier_counts: dict[str, int] | None = None
    automated: tuple[int, int] | None = None  # (automated, answered)
    out_of_scope: tuple[int, int] | None = None  # (out of scope, answered)
    label: str = ""

    @classmethod
    def build(cls, inputs: DriftSample, outputs: DriftSample | None = None, *, max_texts: int = MAX_TEXTS,
              seed: int = 0, label: str = "", text_features: bool = True) -> DriftReference:
        """inputs: the reference messages (training + validation texts, or the trailing window),
        subsampled to `max_texts` (seeded); outputs: the answers to compare outputs with (default:
        the outputs carried by `inputs`, as in a trailing window of enriched messages).
        `text_features=False`: a reference for outputs only, without the novelty index and its
        leave-one-out scores (seconds per day on a trailing window that never uses them)."""
        sample = inputs.subsample(max_texts, seed)
        index = features.NoveltyIndex(sample.texts) if text_features else None
        out = outputs if outputs is not None else inputs
        has = out.intents is not None
        reference = cls(
            texts=sample.texts,
            novelty_loo=tuple(float(v) for v in index.reference_scores_leave_one_out()) if index else (),
            channel_counts=None if sample.channels is None else _counts(sample.channels),
            intent_counts=_counts(out.intents) if has else None,
            confidences=None if out.confidences is None else tuple(c for c in out.confidences if c is not None),
            tier_counts=None if out.tiers is None else _counts(out.tiers),
            automated=None if out.automated is None else _share_of(out.automated),
            out_of_scope=(sum(i in OUT_OF_SCOPE_LABELS for i in out.intents), len(out.intents)) if has else None,
            label=label,
        )
        if index is not None:
            reference.__dict__["index"] = index  # the cached_property's slot: no second fit in this process
        return reference

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, UTF-8): same reference, same bytes."""
        body = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.dumps({"format": FORMAT_VERSION, **body}, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> DriftReference:
        body = json.loads(data.decode("utf-8"))
        if body.pop("format") != FORMAT_VERSION:
            raise ValueError("unsupported drift reference format")
        for name in ("texts", "novelty_loo", "confidences", "automated", "out_of_scope"):
            if body.get(name) is not None:
                body[name] = tuple(body[name])
        return cls(**body)

    # Derived once per process from the stored fields (cheap next to the leave-one-out scores).
    @cached_property
    def index(self) -> features.NoveltyIndex:
        return features.NoveltyIndex(self.texts)

    @cached_property
    def document_frequency(self) -> Counter[str]:
        return features.vocabulary_with_counts(self.texts)

    @cached_property
    def lengths(self) -> np.ndarray:
        return features.text_lengths(self.texts)

    @cached_property
    def oov_rates(self) -> np.ndarray:
        return features.oov_rates(self.texts, self.document_frequency, leave_one_out=True)

    @cached_property
    def script_counts(self) -> dict[str, int]:
        return _counts(features.script_of(t) for t in self.texts)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's verdict. `value` is the effect size named by `statistic`, `threshold` its floor;
    `p_value` comes from `test`, compared with `alpha` (the Bonferroni share of family_alpha)."""

    name: str
    test: str
    statistic: str
    value: float
    threshold: float
    p_value: float
    alpha: float
    drifted: bool
    detail: dict


@dataclass(frozen=True)
class DriftResult:
    kind: Kind
    status: Status
    n_current: int
    n_reference: int
    features: tuple[FeatureDrift, ...]
    explanation: dict
    reference_label: str = ""

    def to_metadata(self) -> dict:
        """Compact, JSON-able, rounded: for Dagster check metadata."""
        return {
            "status": self.status, "kind": self.kind, "n_current": self.n_current,
            "n_reference": self.n_reference, "reference": self.reference_label,
            "features": {f.name: {"test": f.test, "statistic": f.statistic, "value": _r(f.value),
                                  "threshold": _r(f.threshold), "p_value": _p(f.p_value), "alpha": _p(f.alpha),
                                  "drifted": f.drifted, "detail": _rounded(f.detail)} for f in self.features},
            "explanation": _rounded(self.explanation),
        }


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _p(x: float) -> float:
    return float(f"{x:.3g}")


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return _r(value)
    if isinstance(value, dict):
        return {k: (_p(v) if k == "p_value" else _rounded(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _truncate(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1].rstrip() + "…"


def compare(reference: DriftReference, current: DriftSample, *, kind: Kind,
            thresholds: DriftThresholds = DEFAULT_THRESHOLDS, min_sample: int = MIN_SAMPLE,
            seed: int = 0) -> DriftResult:
    """Test one day against the reference; see the module docstring for the rule."""
    if kind not in ("inputs", "outputs"):
        raise ValueError(f"kind must be 'inputs' or 'outputs', got {kind!r}")
    n_ref = len(reference.texts) if kind == "inputs" else (reference.out_of_scope or (0, 0))[1]
    if kind == "inputs" and reference.texts and not reference.novelty_loo:
        raise ValueError("this reference was built without text features (text_features=False): outputs only")
    if kind == "outputs" and reference.intent_counts is None:
        raise ValueError("this reference carries no outputs: build it with outputs=")
    if kind == "outputs" and current.intents is None:
        raise ValueError("the current sample carries no outputs (intent column)")
    if len(current) < min_sample or n_ref < min_sample:
        return DriftResult(kind, "insufficient_data", len(current), n_ref, (), {
            "summary": f"{len(current)} messages against {n_ref} in the reference: at least {min_sample} "
                       "on both sides are needed to judge drift", "min_sample": min_sample},
            reference.label)
    outcomes = (_input_outcomes if kind == "inputs" else _output_outcomes)(reference, current, thresholds, seed)
    alpha = thresholds.family_alpha / len(outcomes)
    results = []
    for name, outcome in outcomes.items():
        floor = thresholds.effect_floors.get(name, 0.0)
        drifted = outcome.p_value < alpha and outcome.effect >= floor
        results.append(FeatureDrift(name, outcome.test, _EFFECT_NAMES[name], outcome.effect, floor,
                                    outcome.p_value, alpha, drifted, outcome.detail))
    status: Status = "drift" if any(f.drifted for f in results) else "ok"
    explanation = _explain(kind, results, reference, current, seed)
    return DriftResult(kind, status, len(current), n_ref, tuple(results), explanation, reference.label)


_EFFECT_NAMES = {
    "text_length": "wasserstein_normed", "oov_rate": "mean_change", "channel_mix": "jensen_shannon",
    "script_mix": "jensen_shannon", "novelty": "excess_novel_share", "domain_classifier": "roc_auc_minus_0_5",
    "intent_distribution": "jensen_shannon", "confidence": "wasserstein_normed",
    "out_of_scope_rate": "abs_rate_change", "tier_mix": "jensen_shannon", "automated_share": "abs_rate_change",
}


def _input_outcomes(reference: DriftReference, current: DriftSample, thresholds: DriftThresholds,
                    seed: int) -> dict[str, stats.TestOutcome]:
    out: dict[str, stats.TestOutcome] = {}
    out["text_length"] = stats.numeric_shift(reference.lengths, features.text_lengths(current.texts))
    cur_oov = features.oov_rates(current.texts, reference.document_frequency)
    oov = stats.numeric_shift(reference.oov_rates, cur_oov)
    out["oov_rate"] = replace(oov, effect=oov.detail["current_mean"] - oov.detail["reference_mean"])
    if reference.channel_counts is not None and current.channels is not None:
        out["channel_mix"] = stats.categorical_shift(Counter(reference.channel_counts), _counter(current.channels))
    out["script_mix"] = stats.categorical_shift(Counter(reference.script_counts),
                                                Counter(features.script_of(t) for t in current.texts))
    scored = current.subsample(MAX_TEXTS, seed)
    loo = np.asarray(reference.novelty_loo)
    cut = float(np.quantile(loo, thresholds.novelty_quantile))
    scores = reference.index.scores(scored.texts)
    novelty = stats.proportion_shift(int((loo > cut).sum()), len(loo), int((scores > cut).sum()), len(scores),
                                     alternative="greater")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    novelty.detail.update(cut=cut, quantile=thresholds.novelty_quantile, _ranked=[scored.texts[i] for i in order])
    out["novelty"] = novelty
    ref_scores, cur_scores, telltale = features.domain_classifier(reference.texts, scored.texts, seed=seed)
    domain = stats.auc_shift(ref_scores, cur_scores)
    domain.detail["telltale_words"] = [w for w, _ in telltale]
    out["domain_classifier"] = domain
    return out


def _output_outcomes(reference: DriftReference, current: DriftSample, thresholds: DriftThresholds,
                     seed: int) -> dict[str, stats.TestOutcome]:
    out: dict[str, stats.TestOutcome] = {}
    intents = current.intents or ()
    out["intent_distribution"] = stats.categorical_shift(Counter(reference.intent_counts), _counter(intents))
    if reference.confidences and current.confidences is not None:
        ref_conf = np.asarray(reference.confidences)
        cur_conf = np.asarray([c for c in current.confidences if c is not None])
        if len(cur_conf):
            conf = stats.numeric_shift(ref_conf, cur_conf)
            conf.detail["psi"] = stats.psi(ref_conf, cur_conf)
            out["confidence"] = conf
    k_ref, n_ref = reference.out_of_scope or (0, 0)
    out["out_of_scope_rate"] = stats.proportion_shift(k_ref, n_ref, sum(i in OUT_OF_SCOPE_LABELS for i in intents),
                                                      len(intents))
    if reference.tier_counts is not None and current.tiers is not None:
        out["tier_mix"] = stats.categorical_shift(Counter(reference.tier_counts), _counter(current.tiers))
    if reference.automated is not None and current.automated is not None:
        k_cur, n_cur = _share_of(current.automated)
        if reference.automated[1] and n_cur:
            out["automated_share"] = stats.proportion_shift(*reference.automated, k_cur, n_cur)
    return out


def _describe(f: FeatureDrift) -> str:
    d = f.detail
    if f.name == "novelty":
        return (f"{d['current_rate']:.1%} of messages unlike the reference (novelty above its "
                f"{d['quantile']:.1%} quantile), against {d['reference_rate']:.1%} expected")
    if f.name == "domain_classifier":
        return f"a classifier tells today's messages from the reference with ROC AUC {d['roc_auc']:.3f}"
    if "moved" in d:
        parts = ", ".join(f"{m['category']} {m['reference_share']:.1%}→{m['current_share']:.1%}"
                          for m in d["moved"][:3])
        return f"{f.name.replace('_', ' ')} moved (JS distance {f.value:.3f}): {parts}"
    if "current_rate" in d:
        return f"{f.name.replace('_', ' ')} {d['reference_rate']:.1%}→{d['current_rate']:.1%}"
    return (f"{f.name.replace('_', ' ')} mean {d['reference_mean']:.3g}→{d['current_mean']:.3g}, "
            f"median {d['reference_median']:.3g}→{d['current_median']:.3g}")


def _explain(kind: Kind, results: list[FeatureDrift], reference: DriftReference, current: DriftSample,
             seed: int) -> dict:
    """What moved, for a person: the drifted features by severity (smallest p-value first), the
    intents whose share moved most, telltale and unknown words, and a few example messages."""
    moved = sorted((f for f in results if f.drifted), key=lambda f: (f.p_value, f.name))
    by_name = {f.name: f for f in results}
    explanation: dict[str, Any] = {
        "moved": [{"feature": f.name, "statistic": f.statistic, "value": f.value, "p_value": f.p_value,
                   "what": _describe(f)} for f in moved],
    }
    examples: list[str] = []
    if kind == "inputs":
        explanation["telltale_words"] = by_name["domain_classifier"].detail["telltale_words"]
        explanation["unknown_words"] = [w for w, _ in features.unknown_words(current.texts,
                                                                             set(reference.document_frequency))]
        ranked = by_name["novelty"].detail.pop("_ranked")  # most novel first
        examples = list(dict.fromkeys(ranked))[:EXAMPLES]
    else:
        top = by_name["intent_distribution"].detail["moved"]
        explanation["top_intents"] = [{"intent": m["category"], "reference_share": m["reference_share"],
                                       "current_share": m["current_share"], "change": m["change"],
                                       "chi2_contribution": m["chi2_contribution"]} for m in top]
        risen = [m["category"] for m in top if m["change"] > 0]
        if current.intents is not None and risen:
            picked = [t for t, i in zip(current.texts, current.intents, strict=True) if i == risen[0]]
            examples = list(dict.fromkeys(picked))[:EXAMPLES]
    explanation["examples"] = [_truncate(t) for t in examples]
    label = f" against {reference.label}" if reference.label else ""
    explanation["summary"] = (f"{kind} drifted{label}: " + "; ".join(m["what"] for m in explanation["moved"])
                              if moved else f"no {kind} drift{label}")
    return explanation
