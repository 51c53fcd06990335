"""The cascade: the local model first, Claude only where it is unsure and the budget allows,
then fallbacks down to keyword rules and a person.

Order for one message:
  1. local model — always tried first (cheap); confident answers stop here;
  2. Claude tiers in order (primary, then the second model) for the unsure ones, while the
     partition deadline and the budget allow;
  3. if every Claude tier failed, the local model's own unsure answer stands, marked with the
     reasons (it will be reviewed: it is below the automation threshold);
  4. if the local model itself is unavailable: keyword rules, then `needs_human`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from ai_assets.data.datasets import intent_words
from ai_assets.serving.intent.automation import HUMAN_TIER as HUMAN
from ai_assets.serving.intent.automation import KEYWORD_TIER as KEYWORDS
from ai_assets.serving.intent.automation import LOCAL_TIER as LOCAL
from ai_assets.serving.intent.automation import NEEDS_HUMAN, reaches_local_threshold
from ai_assets.serving.intent.keyword_rules import RULE_CONFIDENCE, match_rule
from ai_assets.serving.llm.claude_batches import classify_batch
from ai_assets.serving.llm.claude_tier import ClaudeTier
from ai_assets.serving.outcomes import TierAnswer, TierFailure
from ai_assets.serving.resilience.budget import Budget
from ai_assets.serving.resilience.deadline import Deadline

__all__ = ["HUMAN", "KEYWORDS", "LOCAL", "NEEDS_HUMAN", "Enrichment", "ModelCascade", "template_summary", "total_cost"]


class LocalModel(Protocol):
    version: str

    def predict(self, texts: Sequence[str]) -> Sequence: ...  # items with .intent and .confidence


@dataclass
class Enrichment:
    answer: TierAnswer
    fallback_reasons: list[str] = field(default_factory=list)
    local: TierAnswer | None = None  # the local model's own answer (None: it gave none)

    @property
    def fallback_reason(self) -> str:
        return "; ".join(self.fallback_reasons)


def template_summary(intent: str) -> str:
    """The lower tiers' summary: the intent in words, no free text from the customer."""
    return "Customer needs help with: " + intent_words(intent) + "."


@dataclass
class ModelCascade:
    local: LocalModel | None
    local_threshold: float
    claude_tiers: list[ClaudeTier]
    max_workers: int = 8
    clock: Callable[[], float] = time.monotonic

    def _local_answers(self, texts: list[str]) -> tuple[list[TierAnswer | None], str | None]:
        if self.local is None:
            return [None] * len(texts), "local: unavailable"
        started = self.clock()
        try:
            predictions = list(self.local.predict(texts))
        except Exception as exc:  # a broken artifact must not stop the partition
            return [None] * len(texts), f"local: {type(exc).__name__}"
        per_message_ms = (self.clock() - started) * 1000 / max(1, len(texts))
        return [TierAnswer(p.intent, float(p.confidence), template_summary(p.intent), LOCAL,
                           self.local.version, latency_ms=per_message_ms,
                           suggestions=tuple(getattr(p, "top_k", ()))) for p in predictions], None

    def _escalate(self, text: str, local: TierAnswer | None, reasons: list[str],
                  budget: Budget, deadline: Deadline, tiers: list[ClaudeTier]) -> Enrichment:
        for tier in tiers:
            try:
                return Enrichment(tier.classify(text, budget, deadline), reasons, local)
            except TierFailure as failure:
                reasons.append(str(failure))
        if local is not None:
            return Enrichment(local, reasons, local)
        rule = match_rule(text)
        if rule is not None:
            return Enrichment(TierAnswer(rule, RULE_CONFIDENCE, template_summary(rule), KEYWORDS, "rules"),
                              reasons)
        return Enrichment(TierAnswer(NEEDS_HUMAN, 0.0, "No tier could classify this message.", HUMAN, "-"),
                          reasons + ["keyword_rules: no rule matched"])

    def enrich(self, texts: list[str], budget: Budget, deadline: Deadline,
               use_batch: bool = False) -> list[Enrichment]:
        """One enrichment per text, in order. Raises nothing a tier can cause. With `use_batch`
        (backfills) the first Claude tier answers the unsure messages through one batch; what
        the batch cannot answer falls back per message through the synchronous tiers."""
        local, local_error = self._local_answers(texts)
        results: list[Enrichment | None] = [None] * len(texts)
        reasons: dict[int, list[str]] = {}
        for i, answer in enumerate(local):
            if answer is not None and reaches_local_threshold(answer.confidence, self.local_threshold):
                results[i] = Enrichment(answer, local=answer)
            else:
                reasons[i] = [local_error] if local_error else [
                    f"local: confidence {answer.confidence:.3f} < {self.local_threshold:.3f}"]
        if reasons and use_batch and self.claude_tiers:
            unsure = list(reasons)
            for i, outcome in zip(unsure, classify_batch(self.claude_tiers[0], [texts[i] for i in unsure],
                                                         budget, deadline), strict=True):
                if isinstance(outcome, TierAnswer):
                    results[i] = Enrichment(outcome, reasons.pop(i), local[i])
                else:
                    reasons[i].append(str(outcome))
        if reasons:
            with ThreadPoolExecutor(max_workers=max(1, self.max_workers)) as pool:
                futures = {i: pool.submit(self._escalate, texts[i], local[i], why, budget, deadline,
                                          self.claude_tiers)
                           for i, why in reasons.items()}
                for i, future in futures.items():
                    results[i] = future.result()
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # a bug, never a tier's failure: dropping the message would misalign the records
            raise RuntimeError(f"no enrichment for {len(missing)} message(s), first is message {missing[0]}: "
                               f"{texts[missing[0]][:80]!r}")
        return [r for r in results if r is not None]


def total_cost(enrichments: list[Enrichment]) -> Decimal:
    return sum((e.answer.cost_usd for e in enrichments), Decimal(0))
