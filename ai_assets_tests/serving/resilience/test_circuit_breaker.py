"""CircuitBreaker: consecutive-failure trip, open rejection, half-open probes, growing cooldown."""

import threading

import pytest

from ai_assets.serving.resilience.circuit_breaker import CircuitBreaker, CircuitOpen, CircuitState, Transition
from ai_assets_tests.serving.resilience.fake_time import FakeClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Boom(Exception):
    pass


def breaker(clock: FakeClock, **kwargs) -> CircuitBreaker:
    return CircuitBreaker("llm", **{"failure_threshold": 3, "cooldown": 10.0, "clock": clock, **kwargs})


def fail(b: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        b.record_failure(b.allow())


def succeed(b: CircuitBreaker) -> None:
    b.record_success(b.allow())


def test_opens_after_n_consecutive_failures():
    b = breaker(FakeClock())
    fail(b, 2)
    assert b.state is CLOSED
    fail(b)
    assert b.state is OPEN
    assert b.stats().opened == 1


def test_a_success_resets_the_run_of_failures():
    b = breaker(FakeClock())
    fail(b, 2)
    succeed(b)
    fail(b, 2)
    assert b.state is CLOSED
    assert b.stats().consecutive_failures == 2


def test_open_rejects_immediately_without_calling_and_says_when_to_retry():
    clock = FakeClock()
    b = breaker(clock)
    fail(b, 3)
    clock.advance(4.0)
    called = []
    with pytest.raises(CircuitOpen) as raised:
        b.call(lambda: called.append(1))
    assert called == []
    assert raised.value.name == "llm" and raised.value.retry_in == pytest.approx(6.0)
    assert b.stats().rejected == 1


def test_after_the_cooldown_half_open_admits_a_limited_number_of_probes():
    clock = FakeClock()
    b = breaker(clock, half_open_max_calls=2)
    fail(b, 3)
    clock.advance(10.0)
    assert b.state is HALF_OPEN
    p1, p2 = b.allow(), b.allow()
    assert p1.probe and p2.probe
    with pytest.raises(CircuitOpen) as raised:
        b.allow()
    assert raised.value.retry_in == 0.0  # half-open: waiting for a probe, not a cooldown
    b.release(p1)  # a probe that told us nothing frees its slot
    b.allow()


def test_a_probe_success_closes_and_resets_the_cooldown():
    clock = FakeClock()
    b = breaker(clock, cooldown_multiplier=2.0)
    fail(b, 3)
    clock.advance(10.0)
    fail(b)  # probe fails: re-open with 20 s
    assert b.stats().cooldown == 20.0
    clock.advance(20.0)
    succeed(b)
    assert b.state is CLOSED
    assert b.stats().cooldown == 10.0
    fail(b, 2)
    assert b.state is CLOSED  # the run of failures started afresh


def test_a_probe_failure_reopens_with_a_growing_capped_cooldown():
    clock = FakeClock()
    b = breaker(clock, cooldown_multiplier=3.0, max_cooldown=50.0)
    fail(b, 3)
    cooldowns = []
    for _ in range(4):
        cooldown = b.stats().cooldown
        cooldowns.append(cooldown)
        clock.advance(cooldown - 0.001)
        assert b.state is OPEN
        clock.advance(0.001)
        assert b.state is HALF_OPEN
        fail(b)
        assert b.state is OPEN
    assert cooldowns == [10.0, 30.0, 50.0, 50.0]


def test_outcomes_from_calls_admitted_before_a_transition_do_not_move_the_state():
    clock = FakeClock()
    b = breaker(clock)
    slow = b.allow()  # admitted while closed, answers much later
    fail(b, 3)
    b.record_success(slow)  # a stale success must not close an open circuit
    assert b.state is OPEN
    clock.advance(10.0)
    probe = b.allow()
    straggler = slow
    b.record_success(probe)
    assert b.state is CLOSED
    b.record_failure(straggler)  # a stale failure must not count against the new closed period
    assert b.stats().consecutive_failures == 0
    stats = b.stats()
    assert (stats.successes, stats.failures) == (2, 4)  # still counted for metrics


def test_transitions_are_reported_in_order_and_the_callback_may_read_the_breaker():
    clock = FakeClock()
    seen: list[Transition] = []
    b = None

    def on_transition(t: Transition):
        seen.append(t)
        b.stats()  # would deadlock if called under the breaker's lock

    b = breaker(clock, on_transition=on_transition)
    fail(b, 3)
    clock.advance(10.0)
    fail(b)
    clock.advance(20.0)
    succeed(b)
    assert [(t.old, t.new) for t in seen] == [
        (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert [t.cooldown for t in seen if t.new is OPEN] == [10.0, 20.0]
    assert all(t.name == "llm" for t in seen)
    assert seen[1].at == seen[0].at + 10.0


def test_call_counts_only_the_errors_the_caller_calls_failures():
    b = breaker(FakeClock(), failure_threshold=1)

    class BadRequest(Exception):
        pass

    for _ in range(5):
        with pytest.raises(BadRequest):
            b.call(lambda: (_ for _ in ()).throw(BadRequest()), is_failure=lambda e: not isinstance(e, BadRequest))
    assert b.state is CLOSED
    assert b.call(lambda: 42) == 42
    with pytest.raises(Boom):
        b.call(lambda: (_ for _ in ()).throw(Boom()))
    assert b.state is OPEN


def test_guard_records_success_and_failure():
    clock = FakeClock()
    b = breaker(clock, failure_threshold=1)
    with b.guard() as permit:
        assert not permit.probe
    assert b.stats().successes == 1
    with pytest.raises(Boom):
        with b.guard():
            raise Boom()
    assert b.state is OPEN


def test_a_cancelled_probe_frees_its_slot():
    clock = FakeClock()
    b = breaker(clock, failure_threshold=1)
    fail(b)
    clock.advance(10.0)
    with pytest.raises(KeyboardInterrupt):
        with b.guard():
            raise KeyboardInterrupt()
    assert b.state is HALF_OPEN
    succeed(b)
    assert b.state is CLOSED


def test_zero_cooldown_goes_straight_to_half_open():
    b = breaker(FakeClock(), failure_threshold=1, cooldown=0.0, max_cooldown=0.0)
    fail(b)
    assert b.state is HALF_OPEN


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", cooldown=60, max_cooldown=30)


def test_concurrent_failures_open_it_exactly_once_with_every_outcome_counted():
    clock = FakeClock()
    transitions = []
    b = breaker(clock, failure_threshold=800, on_transition=transitions.append)
    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(100):
            b.record_failure(b.allow())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = b.stats()
    assert stats.state is OPEN and stats.opened == 1 and stats.failures == 800
    assert [(t.old, t.new) for t in transitions] == [(CLOSED, OPEN)]


def test_concurrent_callers_in_half_open_get_exactly_the_probe_slots():
    clock = FakeClock()
    b = breaker(clock, failure_threshold=1, half_open_max_calls=3)
    fail(b)
    clock.advance(10.0)
    results = []
    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(50):
            try:
                results.append(b.allow())
            except CircuitOpen:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(p.probe for p in results)
    assert b.stats().rejected == 8 * 50 - 3
