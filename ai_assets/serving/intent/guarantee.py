"""What a confidence threshold promises, as a finite-sample statement, and exact binomial intervals.

A threshold picked so that the validation split's automated messages are 98% right promises
nothing by itself: on 1,300 automated messages, 98.0% observed is compatible with 97.2% in
truth. This module turns the validation split into a statement that holds with a stated
confidence, by a Learn-then-Test argument (Angelopoulos, Bates et al. 2021) with exact
Clopper–Pearson bounds:

  For each threshold t of a grid fixed in advance (`THRESHOLD_GRID`, 0.990 down to 0.000),
  H0(t): "messages automated at t are less than `level` precise". The rows automated at t
  are, given their number n_t, independent draws from the automated traffic, so H0(t) is
  rejected at error rate delta when the one-sided Clopper–Pearson lower bound of k_t / n_t
  reaches `level`. The hypotheses are tested in grid order (highest threshold first) and
  testing stops at the first one that is not rejected (fixed-sequence testing: no
  multiplicity correction is needed, the family-wise error rate stays at delta).

So, with probability at least 1 - delta over the draw of the validation split, *every*
grid threshold from the top down to `guaranteed_threshold` automates messages at least
`level` precise on traffic drawn like that split. Any grid threshold at or above it keeps
the promise, which is why the model's final threshold is the point-estimate threshold
rounded up to the grid and then raised to at least the guaranteed one.

What it does not promise: traffic unlike the validation split (other phrasings, other
out-of-scope kinds, a drift) is not covered; that is what `ai-assets evaluate` on labelled
production traffic checks. The interval of a figure measured on a held-out set
(`proportion_interval`) is the two-sided exact Clopper–Pearson interval: it needs no
normal approximation near 0 and 1, where precision and out-of-scope shares live. (The
monitoring layer's Wilson interval is above this layer and cannot be imported here; both
agree to a few tenths of a point at these sample sizes.)

Pure logic, no Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
GRID_STEP = 0.001
# Highest first: the order of the fixed-sequence test, chosen before any data is seen. It starts
# at 0.99, not at 1: a fixed sequence stops at its first failure, and above 0.99 too few
# messages are automated for any bound to reach 98% (n all-correct rows bound it at
# 0.05 ** (1 / n): 149 rows are needed for 98%). The model's thresholds lie far below.
GRID_START = 0.99
THRESHOLD_GRID: tuple[float, ...] = tuple(round(GRID_START - GRID_STEP * i, 3)
                                          for i in range(round(GRID_START / GRID_STEP) + 1))
METHOD = ("Learn-then-Test: fixed-sequence one-sided Clopper-Pearson tests over the thresholds "
          "0.990, 0.989, ... 0.000 on the validation split's in-scope rows")


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided exact interval for k successes in n trials; (0, 1) when n is 0."""
    from scipy.stats import beta

    _check(k, n, confidence)
    if n == 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def lower_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact lower bound: the true rate is at least this with `confidence`."""
    from scipy.stats import beta

    _check(k, n, confidence)
    return 0.0 if n == 0 or k == 0 else float(beta.ppf(1.0 - confidence, k, n - k + 1))


def upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact upper bound: the true rate is at most this with `confidence`."""
    from scipy.stats import beta

    _check(k, n, confidence)
    return 1.0 if n == 0 or k == n else float(beta.ppf(confidence, k + 1, n - k))


def _check(k: int, n: int, confidence: float) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got {k} of {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def proportion_interval(k: int, n: int, confidence: float = CONFIDENCE, digits: int = 6) -> dict[str, Any]:
    """k of n as the JSON the reports use: value, low, high (two-sided exact), k, n."""
    low, high = clopper_pearson(k, n, confidence)
    return {"value": round(k / n, digits) if n else None, "low": round(low, digits), "high": round(high, digits),
            "k": int(k), "n": int(n), "confidence": confidence}


def grid_ceiling(threshold: float) -> float:
    """The lowest grid threshold at or above `threshold`; a threshold above the grid (or
    infinite) is returned as it is."""
    if not math.isfinite(threshold) or threshold > GRID_START:
        return threshold
    return round(max(0.0, math.ceil(round(threshold / GRID_STEP, 9)) * GRID_STEP), 3)


@dataclass(frozen=True)
class Guarantee:
    """What a threshold promises on traffic drawn like the split it was computed on."""

    level: float  # automated messages are at least this precise ...
    confidence: float  # ... with this probability over the draw of the split
    guaranteed_threshold: float  # the lowest grid threshold the test certified (inf: none)
    n_rows: int  # rows of the split
    method: str = METHOD

    def holds_at(self, threshold: float) -> bool:
        """Whether the promise covers `threshold`: a grid value at or above the certified one."""
        return (math.isfinite(self.guaranteed_threshold) and math.isfinite(threshold)
                and self.guaranteed_threshold - 1e-9 <= threshold <= GRID_START + 1e-9
                and abs(grid_ceiling(threshold) - threshold) < 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def certify(confidences: Sequence[float], correct: Sequence[bool], level: float,
            confidence: float = CONFIDENCE) -> Guarantee:
    """The fixed-sequence test of the module docstring on rows of one split.

    `confidences`: -inf (or NaN) for rows that are never automated (answered out of scope);
    `correct`: the automated answer would be right (an out-of-scope row answered in scope is
    wrong). Each row counts once: no weights, or the binomial argument would not hold.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    conf = np.asarray(confidences, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    if conf.shape != ok.shape or conf.ndim != 1:
        raise ValueError("confidences and correct must be 1-d and of equal length")
    from scipy.stats import beta

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    conf = np.where(np.isfinite(conf), conf, -np.inf)
    order = np.argsort(-conf, kind="stable")
    sorted_conf, hits = conf[order], np.concatenate([[0], np.cumsum(ok[order])])
    grid = np.asarray(THRESHOLD_GRID)
    n = np.searchsorted(-sorted_conf, -grid, side="right")  # rows with confidence >= t, per t
    k = hits[n]
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.where((n > 0) & (k > 0), beta.ppf(1.0 - confidence, np.maximum(k, 1), n - k + 1), 0.0)
    failed = np.flatnonzero(bound < level)
    passed = len(grid) if len(failed) == 0 else int(failed[0])  # the sequence stops at the first failure
    certified = float(grid[passed - 1]) if passed else math.inf
    return Guarantee(level=level, confidence=confidence, guaranteed_threshold=certified, n_rows=len(conf))
