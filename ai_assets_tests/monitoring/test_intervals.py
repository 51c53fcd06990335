import pytest
from scipy.stats import binomtest

from ai_assets.monitoring.intervals import Proportion, wilson_interval


def test_wilson_matches_scipy_and_a_textbook_value():
    # Newcombe (1998), table I: 81 of 263 -> 0.2553..0.3662 at 95%.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    for k, n in [(0, 10), (1, 10), (5, 10), (99, 100), (100, 100), (3, 7)]:
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_a_small_sample_is_wide_and_a_large_one_narrow():
    small, large = Proportion(9, 10), Proportion(9000, 10000)
    assert small.value == large.value == 0.9
    s_low, s_high = small.interval
    l_low, l_high = large.interval
    assert s_high - s_low > 10 * (l_high - l_low)
    assert s_low < 0.6 < 0.89 < l_low


def test_edges_and_bad_input():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert Proportion(0, 0).value is None
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    for k, n in [(-1, 3), (4, 3), (1, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(k, n)
    as_dict = Proportion(3, 4).to_dict()
    assert as_dict["value"] == 0.75 and (as_dict["k"], as_dict["n"]) == (3, 4)
    assert as_dict["low"] < 0.75 < as_dict["high"] < 1.0
