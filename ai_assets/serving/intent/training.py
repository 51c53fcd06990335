"""Training one candidate intent model and measuring it the way the promotion gate judges it.

Pure logic, no Dagster: `intent_model` calls `train_candidate` and stores the result in the
registry. The threshold is fixed on the validation split and a calibration share of the
out-of-scope material for the target precision, with a finite-sample guarantee
(`guarantee.py`); a held-out out-of-scope set of its own (over a thousand messages: the CLINC
gate share and the hand-written `heldout`) measures how many out-of-scope messages the
candidate would automate, with its exact interval.

Reviewers' labels (`ai_assets.review.training_rows`) join the *training* material only
(`reviewed_material`): in-scope labels are appended to the training split, `out_of_scope`
labels to the out-of-scope training set. They never reach the validation split, the
calibration share or the gate's sets, which stay the shipped ones: a reviewed message whose
text is also in one of them is left out (counted), so no figure the gate judges was trained on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ai_assets.data.datasets import LabelledText
from ai_assets.serving.intent.guarantee import proportion_interval, upper_bound
from ai_assets.serving.intent.intent_model import IntentModel, TextEncoder, evaluate
from ai_assets.serving.intent.out_of_scope import (
    NEVER_SEEN_DOMAINS,
    OUT_OF_SCOPE,
    clinc_out_of_scope_split,
    is_out_of_scope_label,
    load_out_of_scope,
)

# Registry metric: the newest review decision id whose labels a candidate was trained with
# (0: none). The retraining sensor counts the labels above the latest version's watermark.
LABELS_WATERMARK = "labels_watermark"


@dataclass(frozen=True)
class TrainedCandidate:
    model: IntentModel
    metrics: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return self.model.info["training_fingerprint"]


def first_per_intent(rows: Sequence[LabelledText], per_intent: int) -> list[LabelledText]:
    """At most `per_intent` rows of each intent, in the given order (0: all rows)."""
    if per_intent <= 0:
        return list(rows)
    seen: dict[str, int] = defaultdict(int)
    out = []
    for row in rows:
        if seen[row.category] < per_intent:
            seen[row.category] += 1
            out.append(row)
    return out


# What the threshold promises (guarantee.py): in-scope automated precision at least 97.5% with
# 95% confidence. The point target stays 98%; certifying 98% itself needs a threshold near 0.87
# on today's validation split, which automates about 82% instead of 85-86%.
GUARANTEE_LEVEL = 0.975
GUARANTEE_CONFIDENCE = 0.95
# Training rows kept per CLINC intent of the four domains (see clinc_out_of_scope_split).
CLINC_TRAIN_PER_INTENT = 40


@dataclass(frozen=True)
class OutOfScopeMaterial:
    """Every out-of-scope set a candidate is trained, calibrated, gated and reported on."""

    train: list[str]  # the out-of-scope class: hand-written train.txt + CLINC training share
    calibration: list[str]  # joins the threshold's pool: the CLINC calibration share
    heldout: list[str]  # the gate's set: the CLINC gate share + hand-written heldout.txt
    reports: dict[str, list[str]]  # shown, not judged: a never-seen CLINC domain, heldout2.txt


def out_of_scope_material(clinc_train_per_intent: int = CLINC_TRAIN_PER_INTENT,
                          never_seen: Sequence[str] = NEVER_SEEN_DOMAINS) -> OutOfScopeMaterial:
    """The shipped out-of-scope sets, cut the one deterministic way; `clinc_train_per_intent`
    caps the CLINC training rows per CLINC intent (the small test configuration trains on
    fewer). Only the training share depends on it: calibration, gate and reports do not."""
    clinc = clinc_out_of_scope_split(never_seen, train_per_intent=clinc_train_per_intent)
    reports = {f"never_seen_clinc_{'+'.join(never_seen)}": clinc["never_seen"]} if never_seen else {}
    return OutOfScopeMaterial(
        train=load_out_of_scope("train") + clinc["train"],
        calibration=clinc["calibration"],
        heldout=clinc["gate"] + load_out_of_scope("heldout"),
        reports={**reports, "heldout2": load_out_of_scope("heldout2")},
    )


def text_key(text: str) -> str:
    """How two texts are compared for overlap: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class ReviewedMaterial:
    """Reviewers' labels as training material, and what was left out of it and why."""

    train: list[LabelledText]  # in-scope labels: appended to the training split
    out_of_scope: list[str]  # labelled out_of_scope: appended to the out-of-scope training set
    corrections: int  # rows used whose label differs from the model's answer
    left_out_held_out: int  # text also in validation, calibration or a gate/report set
    left_out_unknown_label: int  # a label the model does not know (not one of its intents)
    left_out_empty: int = 0  # no text to learn from

    @property
    def rows(self) -> int:
        return len(self.train) + len(self.out_of_scope)

    def to_metrics(self) -> dict[str, int]:
        return {"reviewed_rows": self.rows, "reviewed_in_scope": len(self.train),
                "reviewed_out_of_scope": len(self.out_of_scope), "reviewed_corrections": self.corrections,
                "reviewed_left_out_held_out": self.left_out_held_out,
                "reviewed_left_out_unknown_label": self.left_out_unknown_label,
                "reviewed_left_out_empty": self.left_out_empty}


def reviewed_material(rows: Iterable[tuple[str, str, str]], intents: Iterable[str],
                      held_out_texts: Iterable[str]) -> ReviewedMaterial:
    """Split reviewed `(text, label, model_intent)` rows into training material.

    `intents`: the labels the model is trained on (an unknown label is left out, never a new
    class). `held_out_texts`: every text a figure of the candidate is measured on (validation,
    calibration share, gate and report sets); a reviewed row with the same text (`text_key`)
    is left out, so training never sees a message the gate judges."""
    known = set(intents)
    held_out = {text_key(t) for t in held_out_texts}
    train, oos, corrections, overlap, unknown, empty = [], [], 0, 0, 0, 0
    for text, label, model_intent in rows:
        if not isinstance(text, str) or not text.strip():
            empty += 1
            continue
        if text_key(text) in held_out:
            overlap += 1
            continue
        if not isinstance(label, str):
            unknown += 1
            continue
        if is_out_of_scope_label(label):
            oos.append(text)
            label = OUT_OF_SCOPE
        elif label in known:
            train.append(LabelledText(text, label))
        else:
            unknown += 1
            continue
        said_oos = isinstance(model_intent, str) and is_out_of_scope_label(model_intent)
        corrections += label != (OUT_OF_SCOPE if said_oos else model_intent)
    return ReviewedMaterial(train, oos, corrections, overlap, unknown, empty)


def held_out_texts(validation: Sequence[LabelledText], oos: OutOfScopeMaterial) -> list[str]:
    """Every text a candidate is measured on: what reviewed rows must not repeat."""
    return ([r.text for r in validation] + list(oos.calibration) + list(oos.heldout)
            + [t for texts in oos.reports.values() for t in texts])


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def out_of_scope_automated(model: IntentModel, texts: Sequence[str]) -> dict[str, Any]:
    """How many of these out-of-scope messages the model would automate, with the exact 95%
    interval (`guarantee.proportion_interval`)."""
    if not texts:
        return proportion_interval(0, 0)
    automated = sum(p.automated for p in model.predict(list(texts), top_k=1))
    return proportion_interval(automated, len(texts))


def train_candidate(train: Sequence[LabelledText], validation: Sequence[LabelledText],
                    oos_train: Sequence[str], oos_heldout: Sequence[str], *, encoder: TextEncoder,
                    seed: int = 0, target_precision: float = 0.98, oos_calibration: Sequence[str] = (),
                    oos_reports: Mapping[str, Sequence[str]] | None = None,
                    guarantee_level: float = GUARANTEE_LEVEL) -> TrainedCandidate:
    """Train on `train` + `oos_train`, fix the threshold on `validation` + `oos_calibration`
    (labelled out of scope, pooled with the training out-of-scope messages answered
    out-of-fold), and measure it as the gate judges it.

    `oos_heldout`: the gate's out-of-scope set, never used for choosing anything (the CLINC
    gate share and the hand-written heldout.txt); large enough that one message does not
    decide (the gate refuses a set under `GateRules.min_out_of_scope_heldout`).
    `oos_reports`: further named out-of-scope sets (a CLINC domain the model never saw,
    heldout2.txt) measured and shown with their intervals, not judged.
    """
    model = IntentModel.train([r.text for r in train], [r.category for r in train], oos_train,
                              seed=seed, encoder=encoder)
    val_texts, val_labels = [r.text for r in validation], [r.category for r in validation]
    model.select_threshold(val_texts + list(oos_calibration),
                           val_labels + [OUT_OF_SCOPE] * len(oos_calibration), target_precision,
                           guarantee_level=guarantee_level, guarantee_confidence=GUARANTEE_CONFIDENCE)
    on_validation = evaluate(model, val_texts, val_labels, target=target_precision)
    on_oos = out_of_scope_automated(model, oos_heldout)
    # A second estimate on more messages, but an optimistic one: the training out-of-scope
    # messages answered out-of-fold were in the threshold's pool.
    training_oos = model.calibration_oos
    guarantee = model.threshold_info["guarantee"]
    n_val = len(validation)
    metrics = {
        "accuracy": on_validation["accuracy"],
        "accuracy_interval": proportion_interval(round((on_validation["accuracy"] or 0) * n_val), n_val),
        "macro_f1": on_validation["macro_f1"],
        # Share of validation messages automated at the threshold, and how often they were right.
        "coverage": on_validation["automated_share"],
        "automated_precision": on_validation["automated_precision"],
        "ece": on_validation["ece"],
        # False: no threshold reaches the target precision. The registry stores such a
        # threshold as 1.0, which then automates nothing; the gate refuses the candidate.
        "threshold_finite": math.isfinite(model.threshold),
        # What the threshold promises (guarantee.py): in-scope automated precision at least
        # `level` with `confidence`, on traffic drawn like the validation split.
        "guaranteed_precision": guarantee["level"] if guarantee["holds"] else None,
        "guarantee": _rounded({**{k: guarantee[k] for k in (
            "level", "confidence", "holds", "in_scope_automated", "in_scope_automated_correct",
            "precision_lower_bound_at_threshold", "method")},
            # JSON has no infinity: None when no threshold was certified.
            "guaranteed_threshold": guarantee["guaranteed_threshold"]
            if math.isfinite(guarantee["guaranteed_threshold"]) else None}),
        "out_of_scope_automated": on_oos["value"],
        "out_of_scope_automated_interval": on_oos,
        "out_of_scope_automated_upper95": upper_bound(on_oos["k"], on_oos["n"]) if on_oos["n"] else None,
        "out_of_scope_automated_training_oof": float((training_oos >= model.threshold).mean())
        if len(training_oos) else None,
        "out_of_scope_automated_by_source": {name: out_of_scope_automated(model, texts)
                                             for name, texts in (oos_reports or {}).items()},
        "n_validation": n_val,
        "n_out_of_scope_heldout": len(oos_heldout),
        "n_out_of_scope_calibration": len(oos_calibration),
        "n_train": model.info["n_train"],
        "n_out_of_scope_train": model.info["n_out_of_scope"],
        "encoder": model.info["encoder"],
        "encoder_version": model.info["encoder_version"],
        "training_seconds": model.info["training_seconds"],
        "seed": seed,
    }
    return TrainedCandidate(model, _rounded(metrics))
