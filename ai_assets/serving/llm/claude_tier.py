"""One Claude model as a tier: cache, budget, circuit breaker, rate limit, concurrency,
retries and timeouts around the official `anthropic` SDK.

The SDK's own retries are off (`max_retries=0`): this tier decides, so that a 429's
retry-after pauses every caller, retries stop at the partition deadline, and a failing
model trips its breaker instead of being hammered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import anthropic

from ai_assets.ops_db.llm_cache import cache_key
from ai_assets.serving.llm.prompt import (
    PROMPT_VERSION,
    InvalidModelOutput,
    parse_message_content,
    parse_tool_input,
    request_body,
)
from ai_assets.serving.outcomes import TierAnswer, TierFailure
from ai_assets.serving.resilience.budget import Budget
from ai_assets.serving.resilience.circuit_breaker import CircuitBreaker, CircuitOpen
from ai_assets.serving.resilience.deadline import Deadline, DeadlineExceeded
from ai_assets.serving.resilience.pricing import PriceTable
from ai_assets.serving.resilience.rate_limit import ConcurrencyLimit, RateLimiter
from ai_assets.serving.resilience.retry_policy import RetryPolicy, parse_retry_after

CHARS_PER_TOKEN = 4  # estimate for rate-limit and budget reservations, settled after the call


class AnswerCache(Protocol):
    def get(self, key: str) -> dict | None: ...
    def put(self, key: str, *, model: str, prompt_version: str, response: dict) -> object: ...


class UsageSink(Protocol):
    def __call__(self, *, tier: str, model: str, input_tokens: int, output_tokens: int,
                 latency_ms: float, cost_usd: Decimal, cache_hit: bool, outcome: str, batch: bool) -> None: ...


def failure_kind(error: BaseException) -> str:
    """The fallback reason for an SDK error (most specific class first)."""
    if isinstance(error, anthropic.RateLimitError):
        return "rate_limited"
    if isinstance(error, anthropic.APIStatusError) and error.status_code == 529:
        return "overloaded"
    if isinstance(error, anthropic.InternalServerError) or (
            isinstance(error, anthropic.APIStatusError) and error.status_code >= 500):
        return "server_error"
    if isinstance(error, anthropic.APITimeoutError):
        return "timeout"
    if isinstance(error, anthropic.APIConnectionError):
        return "connection"
    if isinstance(error, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return "auth"
    if isinstance(error, anthropic.APIStatusError):
        return "bad_request"
    if isinstance(error, InvalidModelOutput | ValueError):  # a 200 whose body is not JSON
        return "malformed_output"
    if isinstance(error, DeadlineExceeded):
        return "deadline"
    return type(error).__name__


RETRYABLE = {"rate_limited", "overloaded", "server_error", "timeout", "connection"}


def retry_after_seconds(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


@dataclass
class ClaudeTier:
    name: str
    client: anthropic.Anthropic
    model: str
    labels: list[str]
    prices: PriceTable
    limiter: RateLimiter
    concurrency: ConcurrencyLimit
    breaker: CircuitBreaker
    retry: RetryPolicy
    cache: AnswerCache | None = None
    record_usage: UsageSink | None = None
    call_timeout_s: float = 30.0
    max_output_tokens: int = 256
    prompt_version: str = PROMPT_VERSION
    clock: Callable[[], float] = time.monotonic

    def _estimate(self, text: str) -> tuple[int, Decimal]:
        # Sized from the request itself: the tool schema's label enum alone is ~2,200 characters.
        body = request_body(self.model, text, self.labels, self.max_output_tokens)
        chars = len(json.dumps({k: body[k] for k in ("system", "messages", "tools", "tool_choice") if k in body},
                               separators=(",", ":"), ensure_ascii=False))
        tokens = -(-chars // CHARS_PER_TOKEN)
        return tokens, self.prices.cost(self.model, tokens, self.max_output_tokens)

    def _record(self, answer: TierAnswer | None, outcome: str, latency_ms: float = 0.0) -> None:
        if self.record_usage is None:
            return
        self.record_usage(tier=self.name, model=self.model,
                          input_tokens=answer.input_tokens if answer else 0,
                          output_tokens=answer.output_tokens if answer else 0,
                          latency_ms=answer.latency_ms if answer else latency_ms,
                          cost_usd=answer.cost_usd if answer else Decimal(0),
                          cache_hit=bool(answer and answer.cache_hit), outcome=outcome,
                          batch=bool(answer and answer.batch))

    def cached(self, text: str) -> TierAnswer | None:
        if self.cache is None:
            return None
        hit = self.cache.get(cache_key(self.model, self.prompt_version, text))
        if hit is None:
            return None
        try:
            parsed = parse_tool_input(hit, self.labels)
        except InvalidModelOutput:  # a label set changed under an old entry: ask again
            return None
        answer = TierAnswer(parsed.intent, parsed.confidence, parsed.summary, self.name, self.model,
                            cache_hit=True)
        self._record(answer, "ok")
        return answer

    def remember(self, text: str, answer: TierAnswer) -> None:
        if self.cache is not None:
            self.cache.put(cache_key(self.model, self.prompt_version, text), model=self.model,
                           prompt_version=self.prompt_version,
                           response={"intent": answer.intent, "confidence": answer.confidence,
                                     "summary": answer.summary})

    def classify(self, text: str, budget: Budget, deadline: Deadline) -> TierAnswer:
        """A valid answer, or TierFailure saying why not. Never raises anything else."""
        cached = self.cached(text)
        if cached is not None:
            return cached
        if deadline.expired:
            raise TierFailure(self.name, "deadline")
        est_tokens, est_cost = self._estimate(text)
        hold = budget.reserve(est_cost)
        if not hold:
            raise TierFailure(self.name, "budget_exhausted", hold.reason or "")
        started = self.clock()
        try:
            answer = self.retry.call(lambda: self._attempt(text, est_tokens, deadline), deadline=deadline)
        except Exception as exc:  # every SDK error, timeout, malformed body, open circuit, deadline
            budget.cancel(hold.reservation)
            kind = ("circuit_open" if isinstance(exc, CircuitOpen)
                    else "deadline" if isinstance(exc, DeadlineExceeded) else failure_kind(exc))
            self._record(None, kind, (self.clock() - started) * 1000)
            raise TierFailure(self.name, kind, str(exc)[:200]) from None
        budget.commit(hold.reservation, answer.cost_usd)
        self._record(answer, "ok")
        self.remember(text, answer)
        return answer

    def _attempt(self, text: str, est_tokens: int, deadline: Deadline) -> TierAnswer:
        # A 429 is not a broken tier: the limiter's retry-after pause handles it.
        with self.breaker.guard(is_failure=lambda e: failure_kind(e) not in {"bad_request", "auth", "rate_limited"}):
            reserve = est_tokens + self.max_output_tokens
            if not self.limiter.acquire(reserve, timeout=deadline.remaining()):
                raise DeadlineExceeded("no rate-limit slot before the deadline")
            with self.concurrency.slot(timeout=deadline.remaining()):
                started = self.clock()
                try:
                    response = self.client.messages.create(
                        **request_body(self.model, text, self.labels, self.max_output_tokens),
                        timeout=deadline.cap(self.call_timeout_s))
                except anthropic.RateLimitError as exc:
                    self.limiter.penalize(retry_after_seconds(exc) or 1.0)
                    raise
                latency_ms = (self.clock() - started) * 1000
            used = response.usage.input_tokens + response.usage.output_tokens
            self.limiter.settle(reserve, used)
            parsed = parse_message_content(response.content, self.labels)
            return TierAnswer(parsed.intent, parsed.confidence, parsed.summary, self.name, self.model,
                              latency_ms=latency_ms, input_tokens=response.usage.input_tokens,
                              output_tokens=response.usage.output_tokens,
                              cost_usd=self.prices.cost(self.model, response.usage.input_tokens,
                                                        response.usage.output_tokens))


def is_retryable(error: BaseException) -> bool:
    return failure_kind(error) in RETRYABLE


def default_retry(seed: int | None = None, max_attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(retryable=is_retryable, max_attempts=max_attempts, base_delay=0.5, max_delay=20.0,
                       retry_after=retry_after_seconds, seed=seed)
