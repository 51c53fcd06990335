"""Two-sample tests and effect sizes, each returning (p-value, effect, detail).

Why both: a p-value says whether a difference is more than sampling noise at this day's size;
an effect size says whether it is big enough to be worth a person's look. A feature drifts only
when both agree (see `ai_assets.monitoring.drift`). All tests are scipy's; nothing is resampled,
so every result is deterministic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, fisher_exact, ks_2samp, mannwhitneyu, wasserstein_distance

OTHER = "(other)"
MIN_EXPECTED = 5  # chi-square's usual validity rule: pool categories with fewer counts than this


@dataclass(frozen=True)
class TestOutcome:
    test: str
    statistic: float
    p_value: float
    effect: float  # the effect-size value the floor applies to
    detail: dict


def numeric_shift(reference: np.ndarray, current: np.ndarray) -> TestOutcome:
    """Two-sample Kolmogorov-Smirnov; effect = Wasserstein distance over the reference's standard
    deviation (Evidently's `wasserstein` for numeric columns), which is scale-free."""
    ks = ks_2samp(reference, current, method="asymp")
    std = float(np.std(reference))
    w = float(wasserstein_distance(reference, current))
    normed = w / std if std > 0 else (0.0 if w == 0 else math.inf)
    detail = {"reference_mean": float(np.mean(reference)), "current_mean": float(np.mean(current)),
              "reference_median": float(np.median(reference)), "current_median": float(np.median(current)),
              "ks_statistic": float(ks.statistic)}
    return TestOutcome("ks_2samp", float(ks.statistic), float(ks.pvalue), normed, detail)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's deciles (the credit-scoring convention),
    with a small floor on empty bins so that a bin the current day vacates stays finite."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    ref_share = np.histogram(reference, edges)[0] / len(reference)
    cur_share = np.histogram(current, edges)[0] / len(current)
    ref_share, cur_share = np.clip(ref_share, 1e-4, None), np.clip(cur_share, 1e-4, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def categorical_shift(reference: Counter[str], current: Counter[str], top: int = 5) -> TestOutcome:
    """Chi-square test of homogeneity on the 2 x K table (reference vs current counts), categories
    with fewer than `MIN_EXPECTED` messages in both samples together pooled into `(other)` so the
    approximation holds; effect = Jensen-Shannon distance (base 2, 0..1) of the unpooled shares.

    detail["moved"]: the categories whose share moved most, with their signed share change and
    their contribution to the chi-square statistic (current row), largest first."""
    categories = sorted(set(reference) | set(current))
    n_ref, n_cur = sum(reference.values()), sum(current.values())
    ref_share = np.array([reference[c] / n_ref for c in categories])
    cur_share = np.array([current[c] / n_cur for c in categories])
    js = float(jensenshannon(ref_share, cur_share, base=2)) if len(categories) > 1 else 0.0
    js = 0.0 if math.isnan(js) else js

    kept = [c for c in categories if reference[c] + current[c] >= MIN_EXPECTED]
    pooled = [c for c in categories if c not in kept]
    columns = [[reference[c], current[c]] for c in kept]
    if pooled:
        columns.append([sum(reference[c] for c in pooled), sum(current[c] for c in pooled)])
    table = np.array(columns, dtype=float).T
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        stat, p, contributions = 0.0, 1.0, {}
    else:
        result = chi2_contingency(table, correction=False)
        stat, p = float(result.statistic), float(result.pvalue)
        cur_contrib = (table[1] - result.expected_freq[1]) ** 2 / result.expected_freq[1]
        names = kept + ([OTHER] if pooled else [])
        contributions = dict(zip(names, cur_contrib.tolist(), strict=False))
    changes = cur_share - ref_share
    order = sorted(range(len(categories)), key=lambda i: (-abs(changes[i]), categories[i]))[:top]
    moved = [{"category": categories[i], "reference_share": float(ref_share[i]),
              "current_share": float(cur_share[i]), "change": float(changes[i]),
              "chi2_contribution": float(contributions.get(categories[i], contributions.get(OTHER, 0.0)))}
             for i in order if changes[i] != 0]
    detail = {"categories": len(categories), "pooled_into_other": len(pooled), "moved": moved}
    return TestOutcome("chi2_contingency", stat, p, js, detail)


def proportion_shift(k_ref: int, n_ref: int, k_cur: int, n_cur: int, *, alternative: str = "two-sided"
                     ) -> TestOutcome:
    """Fisher's exact test on the 2 x 2 table: exact at any size, and it carries the reference's own
    sampling error (a one-sample binomial against the reference rate would not).
    effect = absolute change of the rate (one-sided: the increase)."""
    _, p = fisher_exact([[k_cur, n_cur - k_cur], [k_ref, n_ref - k_ref]], alternative=alternative)
    ref_rate, cur_rate = k_ref / n_ref, k_cur / n_cur
    change = cur_rate - ref_rate
    effect = change if alternative == "greater" else abs(change)
    detail = {"reference_rate": ref_rate, "current_rate": cur_rate, "change": change,
              "k_reference": k_ref, "n_reference": n_ref, "k_current": k_cur, "n_current": n_cur}
    return TestOutcome("fisher_exact" + ("_greater" if alternative == "greater" else ""),
                       cur_rate, float(p), float(effect), detail)


def auc_shift(reference_scores: Sequence[float], current_scores: Sequence[float]) -> TestOutcome:
    """AUROC of out-of-fold classifier scores (current = positive) with the one-sided Mann-Whitney U
    test: the AUROC *is* U / (n_ref * n_cur), so the test gives its p-value under "the classifier
    cannot tell the samples apart", at this day's size, instead of a fixed AUROC cut such as
    Evidently's 0.55 (which a share p of new messages can only reach above p = 10%)."""
    result = mannwhitneyu(current_scores, reference_scores, alternative="greater", method="asymptotic")
    auc = float(result.statistic) / (len(reference_scores) * len(current_scores))
    return TestOutcome("mannwhitneyu_greater", auc, float(result.pvalue), auc - 0.5,
                       {"roc_auc": auc, "evidently_default_rule_auc_gt_0_55": auc > 0.55})
