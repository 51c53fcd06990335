"""Proportions with their uncertainty: a figure from 12 messages must not look as precise as one
from 12,000. Every rate that decides something in monitoring is a `Proportion`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion. Unlike the normal approximation it stays
    inside [0, 1] and keeps its coverage near 0 and 1, where precision figures live. An empty
    sample is (0, 1): nothing is known."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exact at the ends: with no failures the upper bound is 1, with no successes the lower is 0.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Proportion:
    """k of n, with its Wilson interval at `confidence`."""

    k: int
    n: int
    confidence: float = CONFIDENCE

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n, self.confidence)

    def to_dict(self, digits: int = 4) -> dict:
        """The JSON form used in Dagster metadata and the report: value, low, high, k, n."""
        low, high = self.interval
        value = self.value
        return {"value": None if value is None else round(value, digits), "low": round(low, digits),
                "high": round(high, digits), "k": self.k, "n": self.n}
