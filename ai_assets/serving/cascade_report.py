"""Quality, automation, latency and cost of routed messages against known labels.

Used by `ai-assets evaluate` on an operator's labelled file. Rows labelled `out_of_scope`
or `oos` are right only when answered `out_of_scope` and must never be automated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from ai_assets.serving.intent.out_of_scope import OUT_OF_SCOPE, is_out_of_scope_label


@dataclass(frozen=True)
class CascadeRow:
    intent: str
    automated: bool
    tier: str
    latency_ms: float
    cost_usd: Decimal


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "mean": round(float(arr.mean()), 3)}


def cascade_report(labels: Sequence[str], rows: Sequence[CascadeRow]) -> dict:
    from sklearn.metrics import f1_score

    if len(labels) != len(rows):
        raise ValueError(f"{len(labels)} labels but {len(rows)} routed rows")
    truth = [OUT_OF_SCOPE if is_out_of_scope_label(label) else label for label in labels]
    predicted = [r.intent for r in rows]
    right = [t == p for t, p in zip(truth, predicted, strict=True)]
    automated = [r.automated for r in rows]
    oos = [t == OUT_OF_SCOPE for t in truth]
    n = len(rows)
    n_auto = sum(automated)
    cost = sum((r.cost_usd for r in rows), Decimal(0))
    return {
        "n": n,
        "n_out_of_scope": sum(oos),
        "accuracy": _share(sum(right), n),
        "macro_f1": round(float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro",
                                         zero_division=0)), 6) if n else None,
        "automated_share": _share(n_auto, n),
        "automated_precision": _share(sum(a and r for a, r in zip(automated, right, strict=True)), n_auto),
        "out_of_scope_automated": _share(sum(a and o for a, o in zip(automated, oos, strict=True)), sum(oos)),
        "per_tier": dict(sorted(Counter(r.tier for r in rows).items())),
        "latency_ms": _percentiles([r.latency_ms for r in rows]),
        "cost_usd": f"{cost:.6f}",
        "cost_per_1000_usd": f"{cost * 1000 / n:.6f}" if n else None,
    }
