"""What the three daily metric assets share: latency distributions, money rendering, and the
"not available, because..." convention.

The computations themselves live in `pipeline_metrics.py` (latency, throughput, errors,
retries, fallbacks, circuit breaker, cache), `cost.py` (spend against the budgets, the month
forecast, cost per 1,000 messages) and `business.py` (automation, escalation, overrides, time
to action, minutes saved, errors caught). Each returns a frozen dataclass whose
`to_metadata()` is JSON-able and deterministic: headline figures are top-level ints and floats
(the Dagster UI plots numeric metadata across partitions), details are nested dicts, and a
figure that cannot be computed is None with its reason under `unavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

PERCENTILES = (50, 95, 99)
MONEY_DIGITS = 6  # floats in metadata: micro-dollars; the exact amount is also given as a string
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_DIGITS)


@dataclass(frozen=True)
class Distribution:
    """n, mean, max and p50/p95/p99 of a sample, with numpy's default (linear) percentiles so
    that a figure can be checked against `np.percentile` on the same values. Empty: n = 0 and
    every figure None."""

    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        arr = np.asarray([float(v) for v in values], dtype=float)
        if arr.size == 0:
            return cls(0, None, None, None, None, None)
        p50, p95, p99 = (float(x) for x in np.percentile(arr, PERCENTILES))
        return cls(int(arr.size), p50, p95, p99, float(arr.mean()), float(arr.max()))

    def to_dict(self, digits: int = 3) -> dict:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, digits)
        return {"n": self.n, "p50": r(self.p50), "p95": r(self.p95), "p99": r(self.p99),
                "mean": r(self.mean), "max": r(self.max)}


def money_float(amount: Decimal | None) -> float | None:
    """A Decimal amount as a float rounded to micro-dollars, for plotting; None stays None."""
    return None if amount is None else float(amount.quantize(_MONEY_QUANTUM))


def money_str(amount: Decimal | None) -> str | None:
    """The exact amount as text (nano-dollars, as the ledger holds it)."""
    return None if amount is None else str(amount)


def share(numerator: Decimal, denominator: Decimal) -> float | None:
    """numerator / denominator as a float to 6 places; None when the denominator is zero."""
    if denominator == 0:
        return None
    return round(float(numerator / denominator), 6)


def round_or_none(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def flat_key(prefix: str, name: str) -> str:
    """A flat metadata key for a per-tier or per-model figure, e.g. `latency_ms_p95__local`."""
    return f"{prefix}__{name}"


__all__ = ["Distribution", "MONEY_DIGITS", "PERCENTILES", "flat_key", "money_float", "money_str",
           "round_or_none", "share"]
