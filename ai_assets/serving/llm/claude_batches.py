"""Backfills through the Message Batches API: half the price, no rush.

One batch per partition for the messages the cache cannot answer; polled with backoff until
it ends or the partition deadline comes. Anything errored, expired, malformed or unfinished
comes back as a TierFailure, and the cascade falls back per message (the synchronous tiers,
then the local answer) — a batch never leaves a message unclassified.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from ai_assets.serving.llm.claude_tier import ClaudeTier, failure_kind
from ai_assets.serving.llm.prompt import InvalidModelOutput, parse_message_content, request_body
from ai_assets.serving.outcomes import TierAnswer, TierFailure
from ai_assets.serving.resilience.budget import Budget
from ai_assets.serving.resilience.deadline import Deadline


def classify_batch(tier: ClaudeTier, texts: list[str], budget: Budget, deadline: Deadline,
                   poll_first_s: float = 0.5, poll_max_s: float = 60.0,
                   sleep: Callable[[float], None] = time.sleep) -> list[TierAnswer | TierFailure]:
    out: list[TierAnswer | TierFailure | None] = [tier.cached(t) for t in texts]
    todo = [i for i, answer in enumerate(out) if answer is None]
    if not todo:
        return out  # type: ignore[return-value]
    estimate = sum((tier.prices.cost(tier.model, (len(texts[i]) + 1200) // 4, tier.max_output_tokens,
                                     batch=True) for i in todo), Decimal(0))
    hold = budget.reserve(estimate)
    if not hold:
        return [a if a is not None else TierFailure(tier.name, "budget_exhausted", hold.reason or "")
                for a in out]
    spent = Decimal(0)
    try:
        batch = tier.client.messages.batches.create(requests=[
            {"custom_id": str(i), "params": request_body(tier.model, texts[i], tier.labels, tier.max_output_tokens)}
            for i in todo])
        wait = poll_first_s
        while batch.processing_status != "ended":
            if deadline.remaining() <= wait:
                tier.client.messages.batches.cancel(batch.id)
                raise TimeoutError("batch did not end before the partition deadline")
            sleep(wait)
            wait = min(wait * 2, poll_max_s)
            batch = tier.client.messages.batches.retrieve(batch.id)
        for item in tier.client.messages.batches.results(batch.id):
            i = int(item.custom_id)
            result = item.result
            if result.type != "succeeded":
                out[i] = TierFailure(tier.name, f"batch_{result.type}")
                continue
            message = result.message
            cost = tier.prices.cost(tier.model, message.usage.input_tokens, message.usage.output_tokens, batch=True)
            spent += cost
            try:
                parsed = parse_message_content(message.content, tier.labels)
            except InvalidModelOutput as exc:
                out[i] = TierFailure(tier.name, "malformed_output", str(exc), cost_usd=cost)
                continue
            answer = TierAnswer(parsed.intent, parsed.confidence, parsed.summary, tier.name, tier.model,
                                input_tokens=message.usage.input_tokens, output_tokens=message.usage.output_tokens,
                                cost_usd=cost, batch=True)
            tier._record(answer, "ok")
            tier.remember(texts[i], answer)
            out[i] = answer
    except Exception as exc:  # the batch as a whole failed: every open message falls back
        kind = "deadline" if isinstance(exc, TimeoutError) else failure_kind(exc)
        out = [a if a is not None else TierFailure(tier.name, f"batch_{kind}", str(exc)[:200]) for a in out]
    finally:
        budget.commit(hold.reservation, spent)
    return [a if a is not None else TierFailure(tier.name, "batch_missing_result") for a in out]
