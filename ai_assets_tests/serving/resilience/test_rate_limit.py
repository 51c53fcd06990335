"""RateLimiter (requests and tokens per minute) and ConcurrencyLimit.

Schedules are checked on a fake clock, where the admission time of each call is exact; one
real-time test with threads checks the bound holds under real contention.
"""

import random
import threading
import time

import pytest

from ai_assets.serving.resilience.rate_limit import ConcurrencyLimit, ConcurrencyTimeout, RateLimiter
from ai_assets_tests.serving.resilience.fake_time import FakeClock


def limiter(clock: FakeClock, **kwargs) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **kwargs)


def assert_within_bucket(events: list[tuple[float, float]], rate: float, capacity: float, slack: float = 1e-6):
    """Over every window [t_i, t_j] of admissions, the amount admitted fits capacity + rate * width."""
    assert [t for t, _ in events] == sorted(t for t, _ in events), "admissions out of order"
    for i in range(len(events)):
        total = 0.0
        for j in range(i, len(events)):
            total += events[j][1]
            width = events[j][0] - events[i][0]
            assert total <= capacity + rate * width + slack, (
                f"{total} admitted in {width:.3f}s from t={events[i][0]:.3f}; bound {capacity + rate * width}")


# --- requests per minute ---------------------------------------------------------------------

def test_a_full_bucket_admits_its_burst_then_one_request_per_interval():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=60, burst_seconds=3)  # 1/s, burst of 3
    assert [rl.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.999)
    assert not rl.try_acquire()
    clock.advance(0.001)
    assert rl.try_acquire()
    assert rl.admitted == 4


def test_back_to_back_callers_are_admitted_exactly_at_the_rate_with_one_sleep_each():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=600, burst_seconds=0.1)  # 10/s, burst 1
    times = []
    for _ in range(5):
        assert rl.acquire()
        times.append(clock())
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert clock.sleeps == pytest.approx([0.1] * 4)


def test_a_bucket_never_holds_more_than_its_burst_however_long_it_idles():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=60, burst_seconds=2)
    clock.advance(3600)
    assert [rl.try_acquire() for _ in range(3)] == [True, True, False]


# --- tokens per minute, and both limits together ---------------------------------------------

def test_tokens_per_minute_limits_on_its_own():
    clock = FakeClock()
    rl = limiter(clock, tokens_per_minute=6000, burst_seconds=1)  # 100 tokens/s, bucket 100
    assert rl.try_acquire(60)
    assert not rl.try_acquire(60)
    assert rl.try_acquire(40)
    clock.advance(0.5)
    assert rl.try_acquire(50)
    assert rl.tokens_admitted == 150


def test_both_limits_must_admit():
    clock = FakeClock()
    # Plenty of requests, few tokens: tokens bind.
    rl = limiter(clock, requests_per_minute=6000, tokens_per_minute=600, burst_seconds=1)  # 10 tok/s
    assert rl.try_acquire(10)
    assert not rl.try_acquire(1)
    # Plenty of tokens, few requests: requests bind.
    rl = limiter(clock, requests_per_minute=60, tokens_per_minute=600_000, burst_seconds=1)
    assert rl.try_acquire(1)
    assert not rl.try_acquire(1)
    clock.advance(1)
    assert rl.try_acquire(1)


def test_a_call_held_back_by_one_limit_uses_the_other_at_its_admission_time_not_before():
    """Otherwise the token bucket would refill during the wait for the request bucket and overshoot."""
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=60, tokens_per_minute=300, burst_seconds=2)  # 1 req/s (cap 2), 5 tok/s (cap 10)
    times = []
    for tokens in (0, 0, 10, 10):
        assert rl.acquire(tokens)
        times.append(clock())
    # Requests allow t=0, 0, 1, 2; the third is admitted at 1 and takes its 10 tokens *then*,
    # so the fourth needs 2 s of token refill after t=1: t=3, not t=2.
    assert times == pytest.approx([0.0, 0.0, 1.0, 3.0])


def test_a_refused_try_acquire_uses_no_allowance_of_the_other_bucket():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=120, tokens_per_minute=600, burst_seconds=1)  # 2 req, 10 tok
    assert rl.try_acquire(5)
    assert not rl.try_acquire(6)  # tokens refuse: the request bucket must not be charged
    assert rl.try_acquire(5)  # the second of the two requests is still there


def test_a_request_larger_than_the_bucket_goes_when_full_and_later_callers_wait_out_the_debt():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, tokens_per_minute=600, burst_seconds=1)  # 10 tok/s, bucket 10
    assert rl.acquire(25)  # full bucket: admitted now, 15 tokens in debt
    assert clock() == 0.0
    assert rl.acquire(10)  # waits for -15 -> 10: 2.5 s
    assert clock() == pytest.approx(2.5)


def bucket_full_at(events: list[tuple[float, float]], i: int, rate: float, capacity: float) -> bool:
    """Was admission i exactly at the bucket's bound (some window ending at it is full to the brim)?"""
    total = 0.0
    for j in range(i, -1, -1):
        total += events[j][1]
        if abs(total - (capacity + rate * (events[i][0] - events[j][0]))) < 1e-6:
            return True
    return False


@pytest.mark.parametrize("rpm, tpm, burst, max_tokens", [
    (120, 6000, 2, 200),  # tokens bind most of the time
    (60, 300, 2, 10),  # balanced: each limit binds in turn
])
def test_random_traffic_stays_inside_both_buckets_and_never_waits_needlessly(rpm, tpm, burst, max_tokens):
    clock = FakeClock(start=0.0)
    rng = random.Random(7)
    rl = limiter(clock, requests_per_minute=rpm, tokens_per_minute=tpm, burst_seconds=burst)
    request_rate, token_rate = rpm / 60, tpm / 60
    arrivals, events = [], []
    for _ in range(250):
        if rng.random() < 0.3:
            clock.advance(rng.uniform(0, 1.5))
        tokens = rng.randint(0, max_tokens)
        arrivals.append(clock())
        assert rl.acquire(tokens)
        events.append((clock(), tokens))
    requests = [(t, 1.0) for t, _ in events]
    tokens = [(t, float(n)) for t, n in events]
    assert_within_bucket(requests, rate=request_rate, capacity=request_rate * burst)
    assert_within_bucket(tokens, rate=token_rate, capacity=token_rate * burst)
    # Work-conserving: whoever waited was admitted the moment one of the buckets had room.
    waited = [i for i, (arrival, (t, _)) in enumerate(zip(arrivals, events)) if t > arrival + 1e-9]
    assert len(waited) > 100
    for i in waited:
        assert (bucket_full_at(requests, i, request_rate, request_rate * burst)
                or bucket_full_at(tokens, i, token_rate, token_rate * burst)), i


# --- waiting and timeouts --------------------------------------------------------------------

def test_acquire_gives_up_at_once_when_the_wait_would_exceed_the_timeout():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=60, burst_seconds=1)
    assert rl.acquire()
    assert rl.acquire(timeout=0.5) is False
    assert clock.sleeps == [] and clock() == 0.0
    assert rl.timed_out == 1
    # The refused caller reserved nothing: the next slot is still at t=1.
    assert rl.acquire(timeout=1.0)
    assert clock() == pytest.approx(1.0)


def test_timeout_zero_is_try_acquire():
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=60, burst_seconds=1)
    assert rl.acquire(timeout=0) is True
    assert rl.acquire(timeout=0) is False


def test_negative_tokens_and_bad_limits_are_refused():
    clock = FakeClock()
    with pytest.raises(ValueError):
        limiter(clock, requests_per_minute=0)
    with pytest.raises(ValueError):
        limiter(clock, tokens_per_minute=-5)
    with pytest.raises(ValueError):
        limiter(clock, requests_per_minute=60, burst_seconds=0)
    with pytest.raises(ValueError):
        limiter(clock, tokens_per_minute=60).try_acquire(-1)


def test_no_limits_admits_everything_without_waiting():
    clock = FakeClock()
    rl = limiter(clock)
    assert all(rl.acquire(10**9) for _ in range(1000))
    assert clock.sleeps == []


# --- server feedback -------------------------------------------------------------------------

def test_penalize_pauses_every_caller_until_retry_after_and_restarts_at_the_rate():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=600, burst_seconds=1)  # 10/s, bucket 10
    rl.penalize(5.0)
    assert rl.paused_for == pytest.approx(5.0)
    assert not rl.try_acquire()
    assert rl.acquire()
    # The bucket restarts empty at the end of the pause: one interval after it, not a burst.
    assert clock() == pytest.approx(5.1)
    assert rl.acquire()
    assert clock() == pytest.approx(5.2)
    assert rl.penalties == 1 and rl.paused_for == 0


def test_a_shorter_penalty_never_shortens_a_longer_one():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=6000)
    rl.penalize(10)
    rl.penalize(2)
    assert rl.paused_for == pytest.approx(10)
    assert rl.penalties == 2


def test_a_penalty_arriving_while_a_caller_sleeps_extends_its_wait():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=60, burst_seconds=1)
    assert rl.acquire()  # the next slot is at t=1

    def penalize_once(seconds):
        clock.on_sleep = None
        rl.penalize(10.0)  # at t=0, while the second caller is about to sleep until t=1

    clock.on_sleep = penalize_once
    assert rl.acquire()
    assert clock() == pytest.approx(10.0)
    assert clock.sleeps == pytest.approx([1.0, 9.0])


def test_a_penalty_that_outlasts_the_timeout_makes_a_waiting_caller_give_up():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=60, burst_seconds=1)
    assert rl.acquire()
    clock.on_sleep = lambda s: (setattr(clock, "on_sleep", None), rl.penalize(30.0))
    assert rl.acquire(timeout=5.0) is False
    assert clock() == pytest.approx(1.0)  # slept to its slot, saw the pause, did not sleep on
    assert rl.timed_out == 1


def test_acquire_refuses_up_front_when_a_pause_exceeds_the_timeout():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, requests_per_minute=60)
    rl.penalize(30.0)
    assert rl.acquire(timeout=5.0) is False
    assert clock.sleeps == []


def test_settle_gives_back_an_overestimate_and_takes_an_underestimate():
    clock = FakeClock(start=0.0)
    rl = limiter(clock, tokens_per_minute=6000, burst_seconds=1)  # bucket 100
    assert rl.try_acquire(100)  # estimate: prompt + max output
    assert not rl.try_acquire(30)
    rl.settle(reserved_tokens=100, used_tokens=40)  # 60 back
    assert rl.try_acquire(60)
    rl.settle(reserved_tokens=0, used_tokens=50)  # an underestimate: 50 tokens of debt
    assert not rl.try_acquire(1)
    clock.advance(0.5)  # refills the 50 of debt only
    assert not rl.try_acquire(1)
    clock.advance(0.01)
    assert rl.try_acquire(1)


def test_settle_never_fills_beyond_capacity_and_is_harmless_without_a_token_limit():
    clock = FakeClock()
    rl = limiter(clock, tokens_per_minute=6000, burst_seconds=1)
    rl.settle(reserved_tokens=10_000, used_tokens=0)
    assert rl.try_acquire(100) and not rl.try_acquire(1)
    limiter(clock, requests_per_minute=60).settle(100, 10)


# --- threads ---------------------------------------------------------------------------------

def test_concurrent_callers_on_a_frozen_clock_get_exactly_the_bucket():
    """Bookkeeping under contention: 8 threads x 200 attempts, exactly the 50 in the bucket get in."""
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=3000, burst_seconds=1)  # bucket 50
    admitted = []
    start = threading.Barrier(8)

    def worker():
        start.wait()
        admitted.append(sum(rl.try_acquire() for _ in range(200)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 50 == rl.admitted


def test_real_threads_in_real_time_never_exceed_the_rate():
    """16 threads contend for 0.4 s of real time at 200 requests/s with a burst of 10."""
    rate, capacity, duration = 200.0, 10.0, 0.4
    rl = RateLimiter(requests_per_minute=rate * 60, burst_seconds=capacity / rate)
    stamps: list[float] = []
    lock = threading.Lock()
    begin = time.monotonic()
    stop_at = begin + duration

    def worker():
        while True:
            remaining = stop_at - time.monotonic()
            if remaining <= 0 or not rl.acquire(timeout=remaining):
                return
            now = time.monotonic()
            with lock:
                stamps.append(now)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    stamps.sort()
    elapsed = stamps[-1] - begin
    # Exact over the whole run: every admission time lies in [begin, last stamp].
    assert len(stamps) <= capacity + rate * elapsed + 1
    # Busy: the limit, not the threads, was the bottleneck.
    assert len(stamps) >= 0.5 * (capacity + rate * duration)
    # Over any 100 ms window. Stamps are taken just after waking, so a thread the OS wakes late
    # can land in the next window: allow for ~25 ms of scheduling jitter (5 requests at 200/s).
    width = 0.1
    j = 0
    for i in range(len(stamps)):
        while j < len(stamps) and stamps[j] - stamps[i] <= width:
            j += 1
        assert j - i <= capacity + rate * width + 5


# --- ConcurrencyLimit ------------------------------------------------------------------------

def test_concurrency_limit_bounds_in_flight_calls_and_reports_the_peak():
    limit = ConcurrencyLimit(3)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def worker():
        with limit:
            entered.release()
            release.wait(5)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert entered.acquire(timeout=5)
    assert not entered.acquire(timeout=0.05)  # the other 5 are blocked
    assert limit.in_flight == 3
    release.set()
    for t in threads:
        t.join(timeout=5)
    assert limit.in_flight == 0
    assert limit.max_observed == 3


def test_slot_times_out_with_a_clear_error_and_frees_on_exit():
    limit = ConcurrencyLimit(1)
    with limit.slot():
        with pytest.raises(ConcurrencyTimeout):
            with limit.slot(timeout=0.01):
                pass
        assert limit.acquire(timeout=0) is False
    assert limit.in_flight == 0
    with pytest.raises(RuntimeError):
        limit.release()
    with pytest.raises(ValueError):
        ConcurrencyLimit(0)


def test_a_slot_is_freed_when_the_call_raises():
    limit = ConcurrencyLimit(1)
    with pytest.raises(KeyError):
        with limit.slot():
            raise KeyError("boom")
    assert limit.acquire(timeout=0)
