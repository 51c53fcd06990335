"""`pipeline_metrics`: latency percentiles equal numpy's, throughput of the serving step, error,
retry, fallback and cache rates, circuit-breaker refusals — on usage rows recorded into a real
ops database, and end to end through the real cascade against the loopback Messages API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum

import numpy as np
import pandas as pd
import pytest
from anthropic import Anthropic

from ai_assets.actions.routing_policy import load_policy
from ai_assets.data.datasets import load_categories, split_banking77
from ai_assets.monitoring.pipeline_metrics import StepRecord, fallback_parts, pipeline_metrics
from ai_assets.ops_db import OpsDb, UsageEntry
from ai_assets.ops_db.metrics_reads import MetricsReads, OutboxTime
from ai_assets.schemas import ENRICHED_COLUMNS
from ai_assets.serving.cascade import ModelCascade
from ai_assets.serving.intent.automation import AutomationPolicy
from ai_assets.serving.live import LiveServing
from ai_assets.serving.llm.claude_tier import ClaudeTier, is_retryable, retry_after_seconds
from ai_assets.serving.resilience.budget import Budget
from ai_assets.serving.resilience.circuit_breaker import CircuitBreaker
from ai_assets.serving.resilience.deadline import Deadline
from ai_assets.serving.resilience.pricing import PriceTable
from ai_assets.serving.resilience.rate_limit import ConcurrencyLimit, RateLimiter
from ai_assets.serving.resilience.retry_policy import RetryPolicy
from ai_assets_tests.doubles import MessagesAPIServer
from ai_assets_tests.doubles.oracle import banking77_labels

PARTITION = "2026-11-20"
T0 = datetime(2026, 11, 20, 6, tzinfo=UTC)
SONNET = "claude-sonnet-4-5"
RNG = np.random.default_rng(7)
LOCAL_MS = list(np.round(RNG.gamma(2.0, 0.4, size=180), 3))
SONNET_MS = list(np.round(RNG.lognormal(6.5, 0.4, size=20), 3))


@pytest.fixture
def db(tmp_path):
    with OpsDb.open(f"sqlite:///{tmp_path / 'ops.db'}") as ops:
        yield ops


def enriched_row(i: int, tier: str, latency_ms: float, fallback_reason: str | None = None,
                 cache_hit: bool = False) -> dict:
    """One row of `enriched_messages`, every column of ENRICHED_COLUMNS."""
    return {"message_id": f"m-{i}", "customer_id": f"c-{i}", "channel": "app",
            "received_at": T0 + timedelta(seconds=i), "text": "where is my card", "intent": "card_arrival",
            "confidence": 0.9, "automated": True, "review_reason": None, "queue": "cards", "priority": "P3",
            "summary": "s", "tier": tier, "answered_by": tier, "fallback_reason": fallback_reason,
            "latency_ms": latency_ms, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
            "cache_hit": cache_hit, "batch": False, "local_model_version": "intent_model v3",
            "prompt_version": "p1", "policy_version": "routing-x"}


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(ENRICHED_COLUMNS))


def known_day() -> pd.DataFrame:
    rows = [enriched_row(i, "local", ms) for i, ms in enumerate(LOCAL_MS)]
    unsure = "local: confidence 0.412 < 0.710"
    rows += [enriched_row(1000 + i, SONNET, ms, unsure) for i, ms in enumerate(SONNET_MS)]
    # Two degraded messages: the primary refused (rate limit, then open circuit), the local answer stands.
    rows += [enriched_row(2000, "local", 0.7, f"{unsure}; {SONNET}: rate_limited (429 slow down; retry)"),
             enriched_row(2001, "local", 0.9, f"{unsure}; {SONNET}: circuit_open (circuit 'x' is open)")]
    return frame(rows)


class Status(Enum):  # the shape of Dagster's StepEventStatus
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


STEPS = [
    {"step_key": "raw_messages", "status": "SUCCESS", "start_time": 1000.0, "end_time": 1001.5, "attempts": 1},
    {"step_key": "validate_messages", "status": Status.SUCCESS, "start_time": 1001.5, "end_time": 1004.0,
     "attempts": 1},
    {"step_key": "enriched_messages", "status": Status.SUCCESS,
     "start_time": datetime.fromtimestamp(1004.0, UTC), "end_time": datetime.fromtimestamp(1012.0, UTC),
     "attempts": 1},
    {"step_key": "case_actions", "status": "FAILURE", "start_time": 1012.0, "end_time": 1013.0, "attempts": 1},
    {"step_key": "case_actions", "status": "SUCCESS", "start_time": 1020.0, "end_time": 1023.0, "attempts": 3},
]


def test_latency_percentiles_per_tier_equal_numpys(db):
    usage_ms = [412, 615, 733, 802, 951, 1210, 1533, 2990]
    db.usage.record_many([UsageEntry(tier=SONNET, model=SONNET, latency_ms=ms, cost_usd=Decimal("0.003"),
                                     run_id="r1", partition=PARTITION, at=T0) for ms in usage_ms]
                         + [UsageEntry(tier=SONNET, model=SONNET, cache_hit=True, run_id="r1", partition=PARTITION,
                                       at=T0),  # 0 ms, nothing measured: left out of the latency
                            UsageEntry(tier=SONNET, model=SONNET, latency_ms=0, batch=True, run_id="r1",
                                       partition=PARTITION, at=T0)])
    m = pipeline_metrics(PARTITION, known_day(), MetricsReads(db.sessions).usage_calls(PARTITION), STEPS)
    local = LOCAL_MS + [0.7, 0.9]
    for tier, values in (("local", local), (SONNET, SONNET_MS)):
        dist = m.latency_by_tier[tier]
        assert dist.n == len(values)
        assert [dist.p50, dist.p95, dist.p99] == pytest.approx(list(np.percentile(values, [50, 95, 99])), abs=1e-9)
    assert m.latency_all.p99 == pytest.approx(np.percentile(local + SONNET_MS, 99), abs=1e-9)
    llm = m.llm_latency_by_tier[SONNET]
    assert llm.n == 8 and llm.p95 == pytest.approx(np.percentile(usage_ms, 95)) and llm.max == 2990
    meta = m.to_metadata()
    assert meta["latency_ms_p95__local"] == round(float(np.percentile(local, 95)), 3)
    assert meta["llm_latency_ms_p50"] == round(float(np.percentile(usage_ms, 50)), 3)
    # The cache-hit rate is over the LLM answers (ok rows): 1 of 10.
    assert meta["cache_hit_rate"] == 0.1 and meta["rates"]["cache_hit"]["n"] == 10
    json.dumps(meta)  # JSON-able as it stands


def test_steps_throughput_retries_and_fallbacks(db):
    enriched = known_day()
    outbox = [OutboxTime(f"m-{i}", "email", "delivered", 1 + (i < 3), T0, T0) for i in range(10)] + [
        OutboxTime("m-99", "webhook", "pending", 0, T0, None)]  # not attempted yet: not in the rate
    m = pipeline_metrics(PARTITION, enriched, [], STEPS, outbox)
    meta = m.to_metadata()
    assert m.serving_step_s == 8.0 and meta["throughput_msgs_per_s"] == round(len(enriched) / 8.0, 3)
    assert m.step_durations["case_actions"].n == 2 and m.step_durations["case_actions"].p50 == 2.0
    assert m.step_status["case_actions"] == {"FAILURE": 1, "SUCCESS": 1}
    assert (m.step_failures.k, m.step_failures.n) == (1, 5) and (m.step_retries.k, m.step_retries.n) == (1, 5)
    assert (m.outbox_retries.k, m.outbox_retries.n) == (3, 10)
    low, high = m.outbox_retries.interval
    assert meta["rates"]["outbox_retry"] == {"value": 0.3, "low": round(low, 4), "high": round(high, 4),
                                             "k": 3, "n": 10}
    assert m.escalated_to_llm == 22 and (m.fallback.k, m.fallback.n) == (2, 202)
    assert m.fallback_by_kind == {"circuit_open": 1, "rate_limited": 1}
    assert (m.llm_answered.k, m.llm_answered.n) == (20, 202)
    # A day with no LLM call: the LLM figures are None with the reason, nothing divides by zero.
    assert meta["llm_calls"] == 0 and meta["llm_error_rate"] is None and meta["cache_hit_rate"] is None
    assert meta["llm_latency_ms_p95"] is None and "llm" in meta["unavailable"]
    assert meta["llm_retry_rate"] is None and "llm_retry_rate" in meta["unavailable"]


def test_a_day_with_zero_messages_and_no_steps():
    m = pipeline_metrics(PARTITION, frame([]), [], [])
    meta = m.to_metadata()
    assert meta["messages"] == 0 and meta["latency_ms_p50"] is None and meta["throughput_msgs_per_s"] is None
    assert meta["fallback_rate"] is None and meta["rates"]["fallback"] == {"value": None, "low": 0.0, "high": 1.0,
                                                                           "k": 0, "n": 0}
    assert {"latency", "llm", "steps", "throughput"} <= set(meta["unavailable"])
    json.dumps(meta)


def test_fallback_reasons_parse_as_the_cascade_writes_them():
    assert fallback_parts(None) == [] and fallback_parts("") == []
    assert fallback_parts("local: confidence 0.412 < 0.710; claude-sonnet-4-5: budget_exhausted (daily budget "
                          "$20 reached: spent $20); claude-haiku-4-5: batch_expired") == [
        ("local", "confidence"), ("claude-sonnet-4-5", "budget_exhausted"), ("claude-haiku-4-5", "batch_expired")]
    assert fallback_parts("local: unavailable; keyword_rules: no rule matched") == [
        ("local", "unavailable"), ("keyword_rules", "no")]


@dataclass
class Prediction:
    intent: str
    confidence: float


class UnsureLocal:
    """A local tier that is never sure: every message goes on to the LLM tier."""

    version = "unsure-local"

    def predict(self, texts):
        return [Prediction("card_arrival", 0.2) for _ in texts]


def test_end_to_end_an_outage_opens_the_breaker_and_is_counted(db):
    """The primary answers 500 to everything; after 3 failures its breaker refuses the rest.
    Usage rows are recorded the way `ModelServing` records them, then read back."""
    texts = [r.text for r in split_banking77()["validation"][:10]]
    labels = load_categories()
    with MessagesAPIServer(banking77_labels(), fault_rates={"api_error": 1.0}) as server:
        def record_usage(*, latency_ms: float, **usage) -> None:
            db.usage.record(**usage, latency_ms=round(latency_ms), run_id="run-1", partition=PARTITION)

        tier = ClaudeTier(name=SONNET, client=Anthropic(api_key="k", base_url=server.base_url, max_retries=0),
                          model=SONNET, labels=labels, prices=PriceTable({SONNET: (3, 15)}),
                          limiter=RateLimiter(requests_per_minute=None), concurrency=ConcurrencyLimit(1),
                          breaker=CircuitBreaker(SONNET, failure_threshold=3, cooldown=60),
                          retry=RetryPolicy(retryable=is_retryable, max_attempts=1, retry_after=retry_after_seconds),
                          record_usage=record_usage, call_timeout_s=5)
        live = LiveServing(model=None, cascade=ModelCascade(UnsureLocal(), 0.7, [tier], max_workers=1),
                           automation=AutomationPolicy(0.7, frozenset(labels)), policy=load_policy(labels=labels),
                           budget=Budget(daily_limit=Decimal(100)), deadline=Deadline(60), prompt_version="p1")
        records = live.serve(texts)
    enriched = pd.DataFrame.from_records(records)
    m = pipeline_metrics(PARTITION, enriched, MetricsReads(db.sessions).usage_calls(PARTITION), [])
    meta = m.to_metadata()
    assert meta["llm_calls"] == 10 and meta["llm_error_rate"] == 1.0
    assert m.llm_errors_by_outcome == {"circuit_open": 7, "server_error": 3}
    assert meta["circuit_open_rejections"] == 7 and meta["circuit_openings_min"] == 1
    assert m.circuit_by_tier == {SONNET: {"rejections": 7, "openings_min": 1}}
    assert meta["fallback_rate"] == 1.0 and m.fallback_by_kind == {"circuit_open": 7, "server_error": 3}
    assert m.llm_latency_all.n == 3  # the refusals never left the process
    assert meta["cache_hit_rate"] is None  # no LLM answer at all


def test_step_records_take_dagster_shaped_dicts():
    record = StepRecord.of({"step_key": "enriched_messages", "status": Status.FAILURE, "start_time": None,
                            "end_time": 5.0, "attempts": None})
    assert (record.status, record.attempts, record.duration_s) == ("FAILURE", 1, None)
