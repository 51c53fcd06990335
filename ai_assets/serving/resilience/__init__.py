"""The resilience primitives the model cascade composes, importable from one place.

Each lives in its own module (plain Python, thread-safe, time injected so tests are
deterministic); this module only gathers them. One way a paid call composes them::

    deadline = Deadline(partition_latency_budget)                 # deadline.py
    hold = budget.reserve(prices.cost(model, est_in, max_out))    # budget.py, pricing.py
    if not hold: -> local tier (hold.reason)

    def attempt():                                                # one try of one tier
        with breaker.guard(is_failure=tier_fault):                # circuit_breaker.py; CircuitOpen -> next tier
            if not limiter.acquire(est_in + max_out, timeout=deadline.remaining()):   # rate_limit.py
                raise ...                                         # no slot in time -> local tier
            with concurrency.slot():                              # rate_limit.py
                return client.create(..., timeout=deadline.cap(per_call_timeout))
            # on a 429: limiter.penalize(retry_after) before re-raising

    response = retry.call(attempt, deadline=deadline)             # retry_policy.py; DeadlineExceeded -> local tier
    limiter.settle(est_in + max_out, used_tokens); budget.commit(hold.reservation, prices.cost(...))
    # (budget.cancel(hold.reservation) if no paid call was made)

``CircuitOpen`` and ``DeadlineExceeded`` should not be classified as retryable.
"""

from ai_assets.serving.resilience.budget import (
                                            AlertLevel,
                                            Budget,
                                            BudgetAlert,
                                            BudgetDecision,
                                            BudgetScope,
                                            Reservation,
)
from ai_assets.serving.resilience.circuit_breaker import (
                                            CircuitBreaker,
                                            CircuitOpen,
                                            CircuitState,
                                            CircuitStats,
                                            Permit,
                                            Transition,
)
from ai_assets.serving.resilience.deadline import Clock, Deadline, DeadlineExceeded, Sleep
from ai_assets.serving.resilience.pricing import ModelPrice, PriceTable, cost, to_money
from ai_assets.serving.resilience.rate_limit import ConcurrencyLimit, ConcurrencyTimeout, RateLimiter
from ai_assets.serving.resilience.retry_policy import RetryPolicy, parse_retry_after

__all__ = [
    "AlertLevel", "Budget", "BudgetAlert", "BudgetDecision", "BudgetScope", "Reservation",
    "CircuitBreaker", "CircuitOpen", "CircuitState", "CircuitStats", "Permit", "Transition",
    "Clock", "Deadline", "DeadlineExceeded", "Sleep",
    "ModelPrice", "PriceTable", "cost", "to_money",
    "ConcurrencyLimit", "ConcurrencyTimeout", "RateLimiter",
    "RetryPolicy", "parse_retry_after",
]
