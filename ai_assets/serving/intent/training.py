"""Training one candidate intent model and measuring it the way the promotion gate judges it.

Pure logic, no Dagster: `intent_model` calls `train_candidate` and stores the result in the
registry. The threshold is fixed on the validation split for the target precision; the
hand-written `heldout` out-of-scope messages (never trained on) measure how many
out-of-scope messages the candidate would automate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ai_assets.data.datasets import LabelledText
from ai_assets.serving.intent.intent_model import IntentModel, TextEncoder, evaluate
from ai_assets.serving.intent.out_of_scope import OUT_OF_SCOPE


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


def wilson_upper(k: int, n: int, z: float = 1.96) -> float | None:
    """Upper end of the Wilson score interval (95% by default) for k successes in n trials."""
    if n <= 0:
        return None
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def train_candidate(train: Sequence[LabelledText], validation: Sequence[LabelledText],
                    oos_train: Sequence[str], oos_heldout: Sequence[str], *, encoder: TextEncoder,
                    seed: int = 0, target_precision: float = 0.98) -> TrainedCandidate:
    model = IntentModel.train([r.text for r in train], [r.category for r in train], oos_train,
                              seed=seed, encoder=encoder)
    val_texts, val_labels = [r.text for r in validation], [r.category for r in validation]
    model.select_threshold(val_texts, val_labels, target_precision)
    on_validation = evaluate(model, val_texts, val_labels, target=target_precision)
    on_oos = evaluate(model, list(oos_heldout), [OUT_OF_SCOPE] * len(oos_heldout))
    oos_share = on_oos["out_of_scope_automated"]
    # The gate's held-out set is small (one message of 137 is 0.73 points), so the UI also shows
    # how uncertain its share is, and the share of the training out-of-scope messages, answered
    # out-of-fold, that the threshold would automate: a second estimate on more messages, but an
    # optimistic one, since the threshold was chosen with those answers in its pool.
    training_oos = model.calibration_oos
    metrics = {
        "accuracy": on_validation["accuracy"],
        "macro_f1": on_validation["macro_f1"],
        # Share of validation messages automated at the threshold, and how often they were right.
        "coverage": on_validation["automated_share"],
        "automated_precision": on_validation["automated_precision"],
        "ece": on_validation["ece"],
        # False: no threshold reaches the target precision. The registry stores such a
        # threshold as 1.0, which then automates nothing; the gate refuses the candidate.
        "threshold_finite": math.isfinite(model.threshold),
        "out_of_scope_automated": oos_share,
        "out_of_scope_automated_upper95": None if oos_share is None
        else wilson_upper(round(oos_share * len(oos_heldout)), len(oos_heldout)),
        "out_of_scope_automated_training_oof": float((training_oos >= model.threshold).mean())
        if len(training_oos) else None,
        "out_of_scope_recall": on_oos["out_of_scope_recall"],
        "n_validation": len(validation),
        "n_out_of_scope_heldout": len(oos_heldout),
        "n_train": model.info["n_train"],
        "n_out_of_scope_train": model.info["n_out_of_scope"],
        "encoder": model.info["encoder"],
        "training_seconds": model.info["training_seconds"],
        "seed": seed,
    }
    return TrainedCandidate(model, _rounded(metrics))
