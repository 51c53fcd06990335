"""Model-serving settings as a Dagster resource, and the cascade built from them per run.

The LLM tiers are on only when an API key is configured (`ANTHROPIC_API_KEY`); without one
every message is served by the local model and the lower tiers, at no cost. Budgets are
checked against the usage recorded in the operations database, so no process holds spend
in memory: a retried or resumed run sees what earlier runs spent today. `ai-assets evaluate`
has a budget of its own and its calls do not count toward the daily budget of live traffic.
"""

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from uuid import uuid4

import anthropic
from dagster import ConfigurableResource

from ai_assets.actions.routing_policy import load_policy
from ai_assets.data.datasets import load_categories
from ai_assets.ops_db import OpsDb
from ai_assets.serving.cascade import LocalModel, ModelCascade
from ai_assets.serving.intent.automation import AutomationPolicy
from ai_assets.serving.live import LiveServing, production_model
from ai_assets.serving.llm.claude_tier import ClaudeTier, default_retry
from ai_assets.serving.llm.prompt import PROMPT_VERSION
from ai_assets.serving.resilience.budget import Budget, BudgetAlert
from ai_assets.serving.resilience.circuit_breaker import CircuitBreaker
from ai_assets.serving.resilience.deadline import Deadline
from ai_assets.serving.resilience.pricing import PriceTable
from ai_assets.serving.resilience.rate_limit import ConcurrencyLimit, RateLimiter

# USD per million tokens (input, output); the batch discount is applied by the price table.
DEFAULT_PRICES = {"claude-sonnet-4-5": [3.0, 15.0], "claude-haiku-4-5": [1.0, 5.0]}
# Usage of `ai-assets evaluate` is recorded under run ids with this prefix.
EVALUATION_RUN_PREFIX = "evaluate-"


class ModelServing(ConfigurableResource):
    anthropic_api_key: str | None = None  # EnvVar("ANTHROPIC_API_KEY"); None: LLM tiers off
    anthropic_base_url: str | None = None  # a gateway or, in tests, the loopback server
    primary_model: str = "claude-sonnet-4-5"
    secondary_model: str = "claude-haiku-4-5"
    prices_per_million_tokens: dict[str, list[float]] = DEFAULT_PRICES
    prompt_version: str = PROMPT_VERSION
    requests_per_minute: int = 50
    tokens_per_minute: int = 40_000
    # Below the server's own ~1 s bucket: arrival jitter then never meets an empty server bucket
    # (with 1 s, 7 of 7 benchmark runs drew one 429 in the opening burst; with 0.25 s, 0 of 5).
    rate_limit_burst_s: float = 0.25
    max_concurrency: int = 8
    call_timeout_s: float = 30.0
    partition_deadline_s: float = 900.0  # then the rest of the partition goes to the local tier
    daily_budget_usd: float = 20.0
    run_budget_usd: float = 5.0
    budget_warn_fraction: float = 0.8
    circuit_failure_threshold: int = 5
    circuit_cooldown_s: float = 30.0
    batch_partitions_older_than_days: int = 2  # backfills of older days use the Batches API
    llm_min_confidence: float = 0.9  # an LLM answer is automated only at this stated confidence

    @property
    def llm_enabled(self) -> bool:
        return bool(self.anthropic_api_key)

    def use_batch_for(self, partition_day: str, today: datetime | None = None) -> bool:
        today = (today or datetime.now(UTC)).date()
        return self.llm_enabled and (today - datetime.fromisoformat(partition_day).date()).days \
            > self.batch_partitions_older_than_days

    def budget(self, db: OpsDb, on_alert=None) -> Budget:
        """Live traffic's budget: the daily limit counts every call today but evaluations'."""
        def spent_today(day) -> Decimal:
            start = datetime.combine(day, time(), tzinfo=UTC)
            return db.usage.spent_usd(since=start, until=start + timedelta(days=1),
                                      exclude_run_prefix=EVALUATION_RUN_PREFIX)

        return Budget(daily_limit=Decimal(str(self.daily_budget_usd)), run_limit=Decimal(str(self.run_budget_usd)),
                      warn_fraction=Decimal(str(self.budget_warn_fraction)), spent_today=spent_today,
                      on_alert=on_alert)

    def deadline(self) -> Deadline:
        return Deadline(self.partition_deadline_s)

    def cascade(self, local: LocalModel | None, local_threshold: float, labels: list[str], db: OpsDb,
               run_id: str | None = None, partition: str | None = None) -> ModelCascade:
        tiers = []
        if self.llm_enabled:
            client = anthropic.Anthropic(api_key=self.anthropic_api_key, base_url=self.anthropic_base_url,
                                         max_retries=0)
            prices = PriceTable({m: tuple(p) for m, p in self.prices_per_million_tokens.items()})
            limiter = RateLimiter(requests_per_minute=self.requests_per_minute,
                                  tokens_per_minute=self.tokens_per_minute, burst_seconds=self.rate_limit_burst_s)
            concurrency = ConcurrencyLimit(self.max_concurrency)

            def record_usage(*, latency_ms: float, **usage) -> None:
                db.usage.record(**usage, latency_ms=round(latency_ms), run_id=run_id, partition=partition)

            for model in (self.primary_model, self.secondary_model):
                tiers.append(ClaudeTier(
                    name=model, client=client, model=model, labels=labels, prices=prices, limiter=limiter,
                    concurrency=concurrency,
                    breaker=CircuitBreaker(model, failure_threshold=self.circuit_failure_threshold,
                                           cooldown=self.circuit_cooldown_s),
                    retry=default_retry(), cache=db.cache, record_usage=record_usage,
                    call_timeout_s=self.call_timeout_s, prompt_version=self.prompt_version))
        return ModelCascade(local=local, local_threshold=local_threshold, claude_tiers=tiers,
                      max_workers=self.max_concurrency)

    def live(self, db: OpsDb, *, run_id: str | None = None, partition: str | None = None,
             on_alert: Callable[[BudgetAlert], None] | None = None) -> LiveServing:
        """The production routing for one run: the registry's production model with its stored
        threshold (none yet: every message is unsure), the LLM tiers, the routing policy."""
        labels = load_categories()
        model = production_model(db)
        threshold = model.record.confidence_threshold if model else 1.0
        return LiveServing(
            model=model,
            cascade=self.cascade(model, threshold, labels, db, run_id=run_id, partition=partition),
            automation=AutomationPolicy(threshold, frozenset(labels), self.llm_min_confidence),
            policy=load_policy(labels=labels),
            budget=self.budget(db, on_alert=on_alert),
            deadline=self.deadline(),
            prompt_version=self.prompt_version,
        )

    def evaluation(self, db: OpsDb, budget_usd: float | None = None) -> LiveServing:
        """The production routing for `ai-assets evaluate`, with a budget of its own:
        `budget_usd` (default `run_budget_usd`) for this evaluation and no daily limit. Its
        calls are recorded, with their cost, under an `evaluate-` run id, which the live
        daily budget leaves out: an evaluation neither spends live traffic's day nor is
        stopped by it."""
        live = self.live(db, run_id=f"{EVALUATION_RUN_PREFIX}{uuid4()}")
        limit = self.run_budget_usd if budget_usd is None else budget_usd
        return dataclasses.replace(live, budget=Budget(run_limit=Decimal(str(limit)),
                                                       warn_fraction=Decimal(str(self.budget_warn_fraction))))
