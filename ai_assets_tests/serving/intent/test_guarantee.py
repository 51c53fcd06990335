"""The threshold's finite-sample guarantee and the exact binomial intervals behind it."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from ai_assets.serving.intent.guarantee import (
    GRID_START,
    THRESHOLD_GRID,
    Guarantee,
    certify,
    clopper_pearson,
    grid_ceiling,
    lower_bound,
    proportion_interval,
    upper_bound,
)


@pytest.mark.parametrize(("k", "n"), [(0, 137), (1, 137), (3, 82), (1280, 1300), (50, 100), (10, 10)])
def test_the_interval_is_scipys_exact_clopper_pearson(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    # One-sided bounds at 95% are the two-sided 90% interval's ends.
    ci90 = binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact")
    assert lower_bound(k, n) == pytest.approx(ci90.low, abs=1e-9)
    assert upper_bound(k, n) == pytest.approx(ci90.high, abs=1e-9)


def test_bounds_at_the_edges():
    assert lower_bound(300, 300) == pytest.approx(0.05 ** (1 / 300))  # n right of n: closed form
    assert upper_bound(0, 1233) == pytest.approx(1 - 0.05 ** (1 / 1233))
    assert clopper_pearson(0, 0) == (0.0, 1.0) and lower_bound(0, 0) == 0.0 and upper_bound(0, 0) == 1.0
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)
    with pytest.raises(ValueError):
        lower_bound(1, 2, confidence=1.0)
    d = proportion_interval(7, 1233)
    assert d["k"] == 7 and d["n"] == 1233 and d["low"] < d["value"] < d["high"] and d["confidence"] == 0.95


def test_the_grid_is_fixed_highest_first_and_thresholds_round_up_onto_it():
    assert THRESHOLD_GRID[0] == GRID_START == 0.99 and THRESHOLD_GRID[-1] == 0.0
    assert all(a > b for a, b in zip(THRESHOLD_GRID, THRESHOLD_GRID[1:], strict=False))
    assert grid_ceiling(0.8286) == 0.829 and grid_ceiling(0.829) == 0.829 and grid_ceiling(0.0) == 0.0
    assert grid_ceiling(0.9951) == 0.9951 and grid_ceiling(math.inf) == math.inf  # above the grid: as is


def test_certify_stops_at_the_first_threshold_it_cannot_certify():
    # 200 rows at 0.995 all right, then 100 at 0.9 of which 20 wrong, then 1000 at 0.5 all right.
    conf = [0.995] * 200 + [0.9] * 100 + [0.5] * 1000
    ok = [True] * 200 + [True] * 80 + [False] * 20 + [True] * 1000
    g = certify(conf, ok, level=0.98)
    # Down to 0.901 only the 200 right rows are automated (bound 0.985); at 0.9 the bound is
    # 280/300 -> 0.90 < 0.98 and testing stops, although lower thresholds would pass again.
    assert g.guaranteed_threshold == 0.901
    assert g.holds_at(0.95) and g.holds_at(0.901) and not g.holds_at(0.9) and not g.holds_at(0.9505)
    assert certify(conf, ok, level=0.999).guaranteed_threshold == math.inf  # 200 rows cannot show 99.9%
    assert not Guarantee(0.98, 0.95, math.inf, 10).holds_at(0.9)


def test_out_of_scope_rows_never_automated_do_not_count():
    conf = [-math.inf] * 500 + [0.995] * 300
    ok = [False] * 500 + [True] * 300
    assert certify(conf, ok, level=0.98).guaranteed_threshold == 0.0


def test_the_promise_holds_at_its_stated_confidence():
    """Draw many validation splits from a population whose precision at every threshold is
    known; the certified threshold may automate less precisely than promised in at most
    about 5% of the draws (here it is rarer: the test is conservative)."""
    rng = np.random.default_rng(0)

    def draw(n):
        # 45% confident rows (0.99+), the rest spread over [0.3, 0.99); P(right) rises with it.
        conf = np.where(rng.random(n) < 0.45, 0.995, rng.uniform(0.3, 0.99, n))
        right = rng.random(n) < np.where(conf > 0.99, 0.997, 0.85 + 0.14 * (conf - 0.3) / 0.69)
        return conf, right

    population_conf, population_right = draw(2_000_000)
    order = np.argsort(-population_conf)
    hits = np.cumsum(population_right[order])
    sorted_conf = population_conf[order]

    def true_precision(t):
        n = int(np.searchsorted(-sorted_conf, -t, side="right"))
        return hits[n - 1] / n

    level, failures, draws = 0.98, 0, 300
    for _ in range(draws):
        g = certify(*draw(1500), level=level)
        assert math.isfinite(g.guaranteed_threshold)
        failures += true_precision(g.guaranteed_threshold) < level
    assert failures / draws <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / draws)
    # And it is not vacuous: the certified threshold is well below the grid's top.
    assert g.guaranteed_threshold < 0.9
