"""Budget: daily and per-run USD limits, 80% alert, hard stop, UTC-midnight reset, store-seeded spend."""

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ai_assets.serving.resilience.budget import AlertLevel, Budget, BudgetAlert, BudgetScope
from ai_assets_tests.serving.resilience.fake_time import FakeWallClock

D = Decimal
T0 = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)


class Store:
    """What the operations database would answer: spend per UTC day (plus a log of questions)."""

    def __init__(self, **spent: str):
        self.spent = {date.fromisoformat(day): D(v) for day, v in spent.items()}
        self.asked: list[date] = []

    def __call__(self, day: date) -> Decimal:
        self.asked.append(day)
        return self.spent.get(day, D(0))


def budget(clock=None, **kwargs):
    alerts: list[BudgetAlert] = []
    b = Budget(now=clock or FakeWallClock(T0), on_alert=alerts.append, **kwargs)
    return b, alerts


def levels(alerts):
    return [(a.scope, a.level) for a in alerts]


# --- hard stop -------------------------------------------------------------------------------

def test_a_call_that_fits_is_allowed_and_one_that_would_pass_the_limit_is_denied():
    b, _ = budget(daily_limit="10")
    b.record("9.50")
    assert b.check("0.50")  # exactly to the limit: allowed
    decision = b.check("0.51")
    assert not decision and decision.allowed is False
    assert decision.scope is BudgetScope.DAILY
    assert "daily" in decision.reason and "10" in decision.reason


def test_at_100_percent_no_paid_call_is_made():
    b, alerts = budget(daily_limit="10")
    b.record("10")
    assert not b.check("0")
    assert not b.check("0.0001")
    assert (BudgetScope.DAILY, AlertLevel.EXHAUSTED) in levels(alerts)


def test_check_changes_nothing():
    b, _ = budget(daily_limit="10")
    for _ in range(100):
        assert b.check("1")
    assert b.daily_spent == 0 and b.run_spent == 0


def test_the_run_limit_binds_independently_of_the_daily_one():
    b, _ = budget(daily_limit="100", run_limit="5")
    b.record("4")
    decision = b.check("2")
    assert not decision and decision.scope is BudgetScope.RUN


def test_no_limits_allow_everything():
    b, alerts = budget()
    b.record("1000000")
    assert b.check("1000000") and alerts == []


def test_a_zero_limit_allows_only_free_calls_nothing_paid():
    b, _ = budget(daily_limit="0")
    assert not b.check("0.000001")


# --- alerts ----------------------------------------------------------------------------------

def test_the_warning_fires_once_on_crossing_80_percent_and_exhausted_once_at_100():
    b, alerts = budget(daily_limit="10")
    b.record("7.99")
    assert alerts == []
    b.record("0.01")
    assert levels(alerts) == [(BudgetScope.DAILY, AlertLevel.WARNING)]
    assert alerts[0].spent == D("8.00") and alerts[0].limit == D("10") and alerts[0].window == "2024-03-01"
    assert "80%" in alerts[0].message
    b.record("1")
    b.check("0.5")
    assert len(alerts) == 1
    b.record("1")
    b.check("0.5")
    assert levels(alerts) == [(BudgetScope.DAILY, AlertLevel.WARNING), (BudgetScope.DAILY, AlertLevel.EXHAUSTED)]


def test_a_refusal_below_100_percent_also_raises_the_exhausted_alert_once():
    b, alerts = budget(daily_limit="10")
    b.record("9")
    assert not b.check("2")
    assert not b.check("2")
    assert levels(alerts) == [(BudgetScope.DAILY, AlertLevel.WARNING), (BudgetScope.DAILY, AlertLevel.EXHAUSTED)]


def test_a_custom_warning_fraction_and_separate_alerts_per_scope():
    b, alerts = budget(daily_limit="100", run_limit="10", warn_fraction="0.5")
    b.record("5")
    assert levels(alerts) == [(BudgetScope.RUN, AlertLevel.WARNING)]
    b.record("45")
    assert levels(alerts)[1:] == [(BudgetScope.DAILY, AlertLevel.WARNING), (BudgetScope.RUN, AlertLevel.EXHAUSTED)]


# --- the daily window and the store ----------------------------------------------------------

def test_spend_already_recorded_today_is_read_from_the_store_and_counts():
    store = Store(**{"2024-03-01": "85"})
    b, alerts = budget(daily_limit="100", spent_today=store)
    assert not b.check("20")
    assert b.check("15")
    assert b.daily_spent == D(85) and b.run_spent == 0
    assert store.asked == [date(2024, 3, 1)]  # asked once for the window, not per check
    # Already past 80% at the start of the window; then a refusal: paid calls are being stopped.
    assert levels(alerts) == [(BudgetScope.DAILY, AlertLevel.WARNING), (BudgetScope.DAILY, AlertLevel.EXHAUSTED)]


def test_the_day_is_the_utc_day_whatever_the_clock_zone():
    store = Store(**{"2024-03-02": "3"})
    # 01:30 on 2 March in UTC+05:00 is 20:30 on 1 March in UTC.
    clock = FakeWallClock(datetime(2024, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=5))))
    b, _ = budget(clock, daily_limit="10", spent_today=store)
    assert b.daily_spent == 0
    assert store.asked == [date(2024, 3, 1)]


def test_the_daily_window_resets_at_utc_midnight_and_re_arms_alerts_while_the_run_window_does_not():
    store = Store()
    clock = FakeWallClock(T0)  # 22:00 UTC
    b, alerts = budget(clock, daily_limit="10", run_limit="100", spent_today=store)
    b.record("9")
    assert not b.check("2")
    clock.advance(hours=1, minutes=59, seconds=59)
    assert not b.check("2")  # 23:59:59: still the same day
    clock.advance(seconds=1)  # midnight UTC
    store.spent[date(2024, 3, 2)] = D("8.5")  # what other runs have already spent today
    assert b.check("1.5") and not b.check("1.51")
    assert b.daily_spent == D("8.5") and b.run_spent == D(9)
    assert store.asked == [date(2024, 3, 1), date(2024, 3, 2)]
    assert [(a.level, a.window) for a in alerts] == [
        (AlertLevel.WARNING, "2024-03-01"), (AlertLevel.EXHAUSTED, "2024-03-01"),
        (AlertLevel.WARNING, "2024-03-02"), (AlertLevel.EXHAUSTED, "2024-03-02")]


def test_refresh_and_refresh_seconds_re_read_the_store():
    store = Store(**{"2024-03-01": "1"})
    clock = FakeWallClock(T0)
    b, _ = budget(clock, daily_limit="10", spent_today=store, refresh_seconds=60)
    assert b.daily_spent == 1
    store.spent[date(2024, 3, 1)] = D(4)  # another run spent 3
    clock.advance(seconds=59)
    assert b.daily_spent == 1
    clock.advance(seconds=1)
    assert b.daily_spent == 4
    store.spent[date(2024, 3, 1)] = D(6)
    b.refresh()
    assert b.daily_spent == 6
    assert len(store.asked) == 3


def test_a_naive_wall_clock_is_refused():
    b = Budget(daily_limit="1", now=lambda: datetime(2024, 3, 1, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        b.check("0.1")


# --- reservations ----------------------------------------------------------------------------

def test_a_reservation_holds_its_estimate_until_committed_at_the_real_cost():
    b, _ = budget(daily_limit="10")
    first = b.reserve("6")
    assert first and first.reservation.amount == D(6)
    assert b.in_flight == D(6)
    assert not b.reserve("5")  # 6 in flight + 5 > 10
    b.commit(first.reservation, "2")  # it cost less than feared
    assert b.in_flight == 0 and b.daily_spent == D(2) and b.run_spent == D(2)
    assert b.reserve("8")


def test_a_cancelled_reservation_costs_nothing():
    b, _ = budget(run_limit="1")
    r = b.reserve("1").reservation
    assert not b.check("0.01")
    b.cancel(r)
    assert b.check("1") and b.run_spent == 0


def test_concurrent_reservations_never_admit_more_than_the_limit():
    b, _ = budget(daily_limit="10.00")
    allowed = []
    start = threading.Barrier(16)

    def worker():
        start.wait()
        for _ in range(5):
            allowed.append(bool(b.reserve("0.25")))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 40  # 40 * 0.25 == 10.00 exactly
    assert b.in_flight == D("10.00")


def test_reservations_from_yesterday_do_not_hold_against_today():
    clock = FakeWallClock(T0)
    b, _ = budget(clock, daily_limit="10")
    r = b.reserve("9").reservation
    clock.advance(hours=3)
    assert b.check("10")  # 01:00 UTC the next day: yesterday's hold is gone
    assert b.in_flight == 0
    b.commit(r, "1")  # finished after midnight: charged to today
    assert b.daily_spent == D(1)


# --- money -----------------------------------------------------------------------------------

def test_money_is_exact_decimal_even_from_floats():
    b, _ = budget(daily_limit=0.3)
    for _ in range(3):
        b.record(0.1)
    assert b.run_spent == D("0.3") and b.daily_limit == D("0.3")
    assert not b.check(0.000001)


def test_bad_amounts_are_refused():
    b, _ = budget(daily_limit="1")
    with pytest.raises(ValueError):
        b.record("-1")
    with pytest.raises(ValueError):
        b.check("-0.01")
    with pytest.raises(TypeError):
        b.record(True)
    with pytest.raises(ValueError):
        b.record("NaN")
    with pytest.raises(ValueError):
        Budget(daily_limit="-1")
    with pytest.raises(ValueError):
        Budget(warn_fraction="1.5")
