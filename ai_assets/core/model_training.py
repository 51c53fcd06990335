"""Training one candidate intent model and measuring it the way the promotion gate judges it.

Pure logic, no Dagster: `intent_model` calls `train_candidate` and stores the result in the
registry. The candidate is trained on every labelled row it is given (the asset gives it the
training and validation splits), so no labelled row is held back for the threshold: the
threshold for the target precision and the quality metrics come from the model's own
out-of-fold answers (k-fold cross-fitting over those rows, see `IntentModel.train`). The
hand-written `heldout` out-of-scope messages (never trained on) measure how many out-of-scope
messages the candidate would automate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ai_assets.core.dataset import LabelledText
from ai_assets.core.intent_model import IntentModel, TextEncoder, evaluate
from ai_assets.core.out_of_scope import OUT_OF_SCOPE


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


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def train_candidate(rows: Sequence[LabelledText], oos_train: Sequence[str], oos_heldout: Sequence[str], *,
                    encoder: TextEncoder, seed: int = 0, target_precision: float = 0.98) -> TrainedCandidate:
    """Train on `rows` and `oos_train`, fix the threshold on the out-of-fold answers, measure.

    accuracy, macro_f1, ece   out-of-fold, over the in-scope training rows
    coverage                  share of those rows automated at the threshold (out-of-fold)
    automated_precision       how often the automated ones were right (out-of-fold)
    out_of_scope_automated    share of `oos_heldout` automated by the final model
    """
    model = IntentModel.train([r.text for r in rows], [r.category for r in rows], oos_train,
                              seed=seed, encoder=encoder)
    model.select_threshold_oof(target_precision)
    automated = model.oof_confidence >= model.threshold
    on_oos = evaluate(model, list(oos_heldout), [OUT_OF_SCOPE] * len(oos_heldout))
    info = model.info
    metrics = {
        "accuracy": info["oof_accuracy_in_scope"],
        "macro_f1": info["oof_macro_f1_in_scope"],
        "coverage": float(automated.mean()),
        "automated_precision": float(model.oof_correct[automated].mean()) if automated.any() else None,
        "ece": info["oof_ece_in_scope"],
        "threshold_source": "oof",
        "folds": info["folds"],
        # False: no threshold reaches the target precision. The registry stores such a
        # threshold as 1.0, which then automates nothing; the gate refuses the candidate.
        "threshold_finite": math.isfinite(model.threshold),
        "out_of_scope_automated": on_oos["out_of_scope_automated"],
        "out_of_scope_recall": on_oos["out_of_scope_recall"],
        "n_out_of_scope_heldout": len(oos_heldout),
        "n_train": info["n_train"],
        "n_out_of_scope_train": info["n_out_of_scope"],
        "encoder": info["encoder"],
        "training_seconds": info["training_seconds"],
        "seed": seed,
    }
    return TrainedCandidate(model, _rounded(metrics))
