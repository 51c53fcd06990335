"""PriceTable (Decimal cost per call, batch half price) and Deadline (a latency budget)."""

import math
from decimal import Decimal

import pytest

from ai_assets.serving import resilience
from ai_assets.serving.resilience.deadline import Deadline, DeadlineExceeded
from ai_assets.serving.resilience.pricing import ModelPrice, PriceTable, cost, to_money
from ai_assets_tests.serving.resilience.fake_time import FakeClock

D = Decimal
PRICES = {"claude-big": {"input": "3", "output": "15"}, "claude-small": ("0.80", "4")}


# --- pricing ---------------------------------------------------------------------------------

def test_cost_is_exact_per_million_token_pricing():
    table = PriceTable(PRICES)
    assert table.cost("claude-big", 1000, 500) == D("0.0105")  # 0.003 + 0.0075
    assert table.cost("claude-small", 1, 1) == D("0.0000048")
    assert table.cost("claude-big", 0, 0) == 0


def test_batch_calls_cost_half():
    table = PriceTable(PRICES)
    assert table.cost("claude-big", 1000, 500, batch=True) == D("0.00525")
    assert PriceTable(PRICES, batch_discount="0.25").cost("claude-big", 1000, 0, batch=True) == D("0.00225")


def test_per_call_costs_sum_to_the_cost_of_the_summed_tokens():
    table = PriceTable(PRICES)
    calls = [(137, 41), (2048, 300), (9, 1)] * 333
    assert sum(table.cost("claude-small", i, o) for i, o in calls) == table.cost(
        "claude-small", sum(i for i, _ in calls), sum(o for _, o in calls))


def test_an_unknown_model_is_an_error_not_a_free_call():
    with pytest.raises(KeyError, match="claude-huge"):
        PriceTable(PRICES).cost("claude-huge", 1, 1)
    assert "claude-big" in PriceTable(PRICES) and "claude-huge" not in PriceTable(PRICES)


def test_prices_from_config_floats_stay_exact_and_bad_prices_are_refused():
    table = PriceTable({"m": {"input": 0.8, "output": 4.0}, "n": ModelPrice(D("1"), D("2"))})
    assert table.prices["m"].input_per_million == D("0.8")
    assert table.cost("n", 1_000_000, 1_000_000) == D(3)
    with pytest.raises(ValueError, match="output"):
        PriceTable({"m": {"input": "1"}})
    with pytest.raises(ValueError):
        PriceTable({"m": ("-1", "1")})
    with pytest.raises(ValueError):
        PriceTable(PRICES).cost("claude-big", -1, 0)
    with pytest.raises(ValueError):
        PriceTable(PRICES, batch_discount="2")


def test_the_cost_helper_prices_straight_from_a_dict():
    assert cost(PRICES, "claude-big", 1000, 500, batch=True) == D("0.00525")


def test_to_money():
    assert to_money(0.1) == D("0.1") and to_money(3) == D(3) and to_money("1.50") == D("1.50")
    with pytest.raises(TypeError):
        to_money(None)
    with pytest.raises(ValueError):
        to_money(float("inf"))


# --- deadline --------------------------------------------------------------------------------

def test_a_deadline_counts_down_on_its_clock_and_expires():
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    assert deadline.remaining() == 10.0 and not deadline.expired
    clock.advance(7.5)
    assert deadline.remaining() == 2.5
    clock.advance(2.5)
    assert deadline.expired and deadline.remaining() == 0.0
    clock.advance(5)
    assert deadline.remaining() == 0.0  # never negative


def test_cap_shortens_a_per_call_timeout_to_the_time_left():
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    assert deadline.cap(30.0) == 10.0
    assert deadline.cap(3.0) == 3.0
    assert deadline.cap(None) == 10.0


def test_check_raises_once_expired():
    clock = FakeClock()
    deadline = Deadline(1.0, clock)
    deadline.check()
    clock.advance(1.0)
    with pytest.raises(DeadlineExceeded, match="classify"):
        deadline.check("classify")
    assert issubclass(DeadlineExceeded, TimeoutError)


def test_no_deadline_never_expires():
    clock = FakeClock()
    for deadline in (Deadline(None, clock), Deadline.never(clock)):
        clock.advance(1e9)
        assert not deadline.expired and deadline.remaining() == math.inf and deadline.cap(5.0) == 5.0


def test_a_negative_or_nan_deadline_is_refused():
    with pytest.raises(ValueError):
        Deadline(-1)
    with pytest.raises(ValueError):
        Deadline(float("nan"))


def test_the_resilience_module_exports_every_primitive():
    for name in resilience.__all__:
        assert getattr(resilience, name) is not None
    assert {"RateLimiter", "ConcurrencyLimit", "RetryPolicy", "CircuitBreaker", "Budget", "Deadline",
            "PriceTable"} <= set(resilience.__all__)
