"""RetryPolicy: full-jitter backoff, retry-after, attempts, caller-classified errors, deadlines."""

from datetime import UTC, datetime, timedelta

import pytest

from ai_assets.serving.resilience.deadline import Deadline, DeadlineExceeded
from ai_assets.serving.resilience.retry_policy import RetryPolicy, parse_retry_after
from ai_assets_tests.serving.resilience.fake_time import FakeClock


class Transient(Exception):
    def __init__(self, retry_after: float | None = None):
        super().__init__(f"transient (retry-after {retry_after})")
        self.retry_after = retry_after


class Permanent(Exception):
    pass


def policy(clock: FakeClock, **kwargs) -> RetryPolicy:
    defaults = dict(retryable=lambda e: isinstance(e, Transient), retry_after=lambda e: getattr(e, "retry_after", None),
                    base_delay=1.0, multiplier=2.0, max_delay=30.0, max_attempts=5, seed=42, sleep=clock.sleep)
    return RetryPolicy(**{**defaults, **kwargs})


def flaky(failures: list[Exception], result="ok"):
    """A callable that raises the given errors in turn, then returns ``result``; counts its calls."""
    def fn():
        fn.calls += 1
        if failures:
            raise failures.pop(0)
        return result
    fn.calls = 0
    return fn


def test_retries_transient_errors_until_success_with_delays_inside_the_jitter_range():
    clock = FakeClock()
    fn = flaky([Transient(), Transient(), Transient()])
    assert policy(clock).call(fn) == "ok"
    assert fn.calls == 4
    assert len(clock.sleeps) == 3
    for n, slept in enumerate(clock.sleeps, start=1):
        assert 0 <= slept <= 2.0 ** (n - 1)


def test_the_same_seed_gives_the_same_delays_and_another_seed_different_ones():
    def delays(seed):
        clock = FakeClock()
        policy(clock, seed=seed).call(flaky([Transient()] * 4))
        return clock.sleeps
    assert delays(1) == delays(1)
    assert delays(1) != delays(2)


def test_full_jitter_spreads_over_the_whole_range_and_the_cap_stops_growth():
    p = policy(FakeClock(), base_delay=0.5, multiplier=2.0, max_delay=8.0)
    assert [p.backoff_cap(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    draws = [p.backoff(6) for _ in range(2000)]
    assert 0 <= min(draws) < 0.2 and 7.8 < max(draws) <= 8.0
    assert 3.6 < sum(draws) / len(draws) < 4.4  # uniform on [0, 8]
    assert p.backoff_cap(100_000) == 8.0  # no float overflow


def test_gives_up_after_max_attempts_and_re_raises_the_last_error_itself():
    clock = FakeClock()
    last = Transient()
    fn = flaky([Transient(), Transient(), last])
    with pytest.raises(Transient) as raised:
        policy(clock, max_attempts=3).call(fn)
    assert raised.value is last
    assert fn.calls == 3 and len(clock.sleeps) == 2


def test_max_attempts_one_never_retries():
    clock = FakeClock()
    fn = flaky([Transient()])
    with pytest.raises(Transient):
        policy(clock, max_attempts=1).call(fn)
    assert fn.calls == 1 and clock.sleeps == []


def test_errors_the_caller_does_not_classify_as_retryable_are_raised_at_once():
    clock = FakeClock()
    fn = flaky([Permanent("400 bad request")])
    with pytest.raises(Permanent):
        policy(clock).call(fn)
    assert fn.calls == 1 and clock.sleeps == []


def test_a_server_retry_after_is_a_floor_on_the_delay():
    clock = FakeClock()
    policy(clock).call(flaky([Transient(retry_after=7.0), Transient(retry_after=0.001)]))
    assert clock.sleeps[0] == 7.0  # first retry's jitter is at most 1 s: the server wins
    reference = policy(FakeClock())  # same seed: the second draw is the jitter used for retry 2
    reference.backoff(1)
    assert clock.sleeps[1] == max(0.001, reference.backoff(2))


def test_a_retry_after_longer_than_max_delay_gives_up_instead_of_retrying_early():
    clock = FakeClock()
    error = Transient(retry_after=120.0)
    fn = flaky([error])
    with pytest.raises(Transient) as raised:
        policy(clock, max_delay=30.0).call(fn)
    assert raised.value is error
    assert fn.calls == 1 and clock.sleeps == []


def test_never_sleeps_past_the_deadline_and_says_so():
    clock = FakeClock(start=0.0)
    deadline = Deadline(5.0, clock)
    fn = flaky([Transient(retry_after=2.0), Transient(retry_after=2.0), Transient(retry_after=2.0)])
    with pytest.raises(DeadlineExceeded) as raised:
        policy(clock).call(fn, deadline=deadline)
    # Slept 2 + 2 (within the 5 s); a third 2 s wait would end at 6 > 5: gave up at t=4 instead.
    assert clock.sleeps == [2.0, 2.0] and clock() == 4.0
    assert raised.value.attempts == 3
    assert isinstance(raised.value.last_error, Transient)
    assert raised.value.__cause__ is raised.value.last_error
    assert "deadline" in str(raised.value) and "3 attempt" in str(raised.value)


def test_an_expired_deadline_makes_no_call_at_all():
    clock = FakeClock()
    deadline = Deadline(1.0, clock)
    clock.advance(1.0)
    fn = flaky([])
    with pytest.raises(DeadlineExceeded) as raised:
        policy(clock).call(fn, deadline=deadline)
    assert fn.calls == 0 and raised.value.attempts == 0 and raised.value.last_error is None


def test_a_wait_that_would_end_exactly_at_the_deadline_is_not_taken():
    """Sleeping to the very end would leave no time for the call: give up now instead."""
    clock = FakeClock(start=0.0)
    deadline = Deadline(3.0, clock)
    fn = flaky([Transient(retry_after=3.0)])
    with pytest.raises(DeadlineExceeded) as raised:
        policy(clock).call(fn, deadline=deadline)
    assert clock() == 0.0 and clock.sleeps == [] and fn.calls == 1
    assert raised.value.attempts == 1 and isinstance(raised.value.last_error, Transient)


def test_a_generous_deadline_changes_nothing():
    clock = FakeClock()
    assert policy(clock).call(flaky([Transient()]), deadline=Deadline(None, clock)) == "ok"


def test_on_retry_reports_each_retry_before_its_sleep():
    clock = FakeClock()
    seen = []
    p = policy(clock, on_retry=lambda n, error, delay: seen.append((n, type(error).__name__, delay, clock())))
    start = clock()
    p.call(flaky([Transient(retry_after=1.0), Transient(retry_after=1.0)]))
    assert [(n, name) for n, name, _, _ in seen] == [(1, "Transient"), (2, "Transient")]
    assert [delay for _, _, delay, _ in seen] == clock.sleeps
    assert seen[0][3] == start  # reported before sleeping


def test_base_exceptions_are_never_retried():
    clock = FakeClock()
    p = RetryPolicy(retryable=lambda e: True, sleep=clock.sleep)
    fn = flaky([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        p.call(fn)
    assert fn.calls == 1


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        RetryPolicy(retryable=bool, max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(retryable=bool, multiplier=0.5)


@pytest.mark.parametrize("value, expected", [
    ("2", 2.0), (" 1.5 ", 1.5), (3, 3.0), ("-4", 0.0), (None, None), ("soon", None), ("", None), ("nan", None),
])
def test_parse_retry_after_reads_delta_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_reads_an_http_date():
    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Fri, 01 Mar 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Fri, 01 Mar 2024 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after((now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now=now) == 90.0


def test_an_oversleep_past_the_deadline_stops_before_the_next_call():
    """A real sleep can overrun; the deadline is checked again before calling."""
    clock = FakeClock(start=0.0)
    deadline = Deadline(5.0, clock)
    clock.on_sleep = lambda seconds: clock.advance(10.0)  # the OS woke us far too late
    fn = flaky([Transient(retry_after=1.0)])
    with pytest.raises(DeadlineExceeded) as raised:
        policy(clock).call(fn, deadline=deadline)
    assert fn.calls == 1 and raised.value.attempts == 1
    assert "after 1 attempt" in str(raised.value)
