"""`pipeline_metrics` for one day: how the pipeline ran — latency per tier and per step,
throughput of the serving step, errors, retries, fallbacks, circuit-breaker refusals, cache.

Sources, and what each can honestly say:
- `enriched_messages` rows: one per message, the answering tier, its latency, the cascade's
  `fallback_reason` ("; "-joined "tier: kind (detail)" parts), cache hit, batch.
- the usage ledger (`MetricsReads.usage_calls`): one row per *logical* LLM call — its retries
  are inside one row, with the total latency — outcome "ok" or the error kind, "circuit_open"
  when the tier's breaker refused the call.
- Dagster step records (`StepRecord`, passed in by the asset): status, start/end, attempts.
- the outbox of the partition (`MetricsReads.outbox_times`): delivery attempts per row.

Not recorded upstream (so reported as None with the reason, or as a bound):
- LLM retries: `RetryPolicy(on_retry=...)` is not wired in `ClaudeTier`, and the ledger has one
  row per logical call, so how many HTTP attempts a call took is unknown. Needed: an `attempts`
  column in `llm_usage` (or one row per attempt).
- Circuit-breaker openings: `CircuitBreaker(on_transition=...)` is not wired and
  `CircuitStats.opened` is never persisted. What is recorded is every call the open breaker
  refused (outcome `circuit_open`). A breaker lives for one asset execution (run, partition)
  and tier, so each (run, partition, tier) with a refusal had its breaker open at least once:
  `circuit_openings_min` is that lower bound. Needed: a usage/audit row per transition.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from ai_assets.monitoring.intervals import Proportion
from ai_assets.monitoring.metrics import Distribution, flat_key, round_or_none
from ai_assets.ops_db.metrics_reads import OutboxTime, UsageCall
from ai_assets.serving.intent.automation import is_llm_tier

SERVING_STEP = "enriched_messages"  # the step key of the asset that calls the models
CIRCUIT_OPEN = "circuit_open"
STEP_SUCCESS, STEP_FAILURE = "SUCCESS", "FAILURE"  # Dagster's StepEventStatus values
# One "tier: kind" part of a fallback reason; the detail after the kind is ignored.
_PART = re.compile(r"(?:^|; )(?P<tier>[A-Za-z0-9_.\-]+): (?P<kind>[A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class StepRecord:
    """One Dagster step of one run, as plain data (from `instance.get_run_step_stats(run_id)`:
    step_key, status.value, start_time, end_time, attempts). Times are epoch seconds."""

    step_key: str
    status: str  # SUCCESS | FAILURE | SKIPPED | IN_PROGRESS
    start_time: float | None
    end_time: float | None
    attempts: int = 1
    run_id: str | None = None

    @classmethod
    def of(cls, record: StepRecord | Mapping[str, Any]) -> StepRecord:
        """A StepRecord from itself or a dict; datetimes are accepted for the times, and a
        status enum for the status (its `.value`)."""
        if isinstance(record, StepRecord):
            return record

        def seconds(value: Any) -> float | None:
            if value is None:
                return None
            return value.timestamp() if isinstance(value, datetime) else float(value)

        status = record["status"]
        return cls(step_key=str(record["step_key"]), status=str(getattr(status, "value", status)).upper(),
                   start_time=seconds(record.get("start_time")), end_time=seconds(record.get("end_time")),
                   attempts=int(record.get("attempts") or 1), run_id=record.get("run_id"))

    @property
    def duration_s(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return max(0.0, self.end_time - self.start_time)


def fallback_parts(reason: str | None) -> list[tuple[str, str]]:
    """(tier, kind) of each part of a cascade fallback reason, in order. "local: confidence ..."
    is the cascade escalating an unsure answer by design; every other part is a tier that
    could not answer (rate_limited, circuit_open, budget_exhausted, local: unavailable, ...)."""
    if not isinstance(reason, str) or not reason:
        return []
    return [(m["tier"], m["kind"]) for m in _PART.finditer(reason)]


def _is_failure(tier: str, kind: str) -> bool:
    return not (tier == "local" and kind == "confidence")


@dataclass(frozen=True)
class PipelineMetrics:
    partition: str
    messages: int
    latency_by_tier: dict[str, Distribution]  # enriched rows: the answering tier's latency per message
    latency_all: Distribution
    llm_latency_by_tier: dict[str, Distribution]  # ledger: calls that went to the network
    llm_latency_all: Distribution
    step_durations: dict[str, Distribution]  # seconds, per step key
    step_status: dict[str, dict[str, int]]
    serving_step_s: float | None
    throughput_msgs_per_s: float | None
    llm_calls: int
    llm_errors: Proportion  # ledger rows whose outcome is not ok (circuit_open refusals included)
    llm_errors_by_outcome: dict[str, int]
    escalated_to_llm: int  # messages the local model was unsure of (the cascade asked further tiers)
    llm_answered: Proportion  # messages answered by an LLM tier
    fallback: Proportion  # messages where some tier failed to answer
    fallback_by_kind: dict[str, int]
    step_failures: Proportion
    step_retries: Proportion  # steps that needed more than one attempt
    outbox_retries: Proportion  # attempted outbox rows that needed more than one attempt
    circuit_open_rejections: int
    circuit_openings_min: int
    circuit_by_tier: dict[str, dict[str, int]]
    cache_hits: Proportion  # of the LLM answers (ok ledger rows), how many came from the cache
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict:
        """Flat numbers to plot, nested details, reasons for what is missing."""
        flat: dict[str, Any] = {
            "messages": self.messages,
            "latency_ms_p50": round_or_none(self.latency_all.p50, 3),
            "latency_ms_p95": round_or_none(self.latency_all.p95, 3),
            "latency_ms_p99": round_or_none(self.latency_all.p99, 3),
            "llm_latency_ms_p50": round_or_none(self.llm_latency_all.p50, 3),
            "llm_latency_ms_p95": round_or_none(self.llm_latency_all.p95, 3),
            "llm_latency_ms_p99": round_or_none(self.llm_latency_all.p99, 3),
            "serving_step_s": round_or_none(self.serving_step_s, 3),
            "throughput_msgs_per_s": round_or_none(self.throughput_msgs_per_s, 3),
            "llm_calls": self.llm_calls,
            "llm_error_rate": round_or_none(self.llm_errors.value),
            "fallback_rate": round_or_none(self.fallback.value),
            "escalated_to_llm": self.escalated_to_llm,
            "llm_answer_share": round_or_none(self.llm_answered.value),
            "step_failure_rate": round_or_none(self.step_failures.value),
            "step_retry_rate": round_or_none(self.step_retries.value),
            "outbox_retry_rate": round_or_none(self.outbox_retries.value),
            "llm_retry_rate": None,
            "circuit_open_rejections": self.circuit_open_rejections,
            "circuit_openings_min": self.circuit_openings_min,
            "cache_hit_rate": round_or_none(self.cache_hits.value),
        }
        for tier, dist in self.latency_by_tier.items():
            flat[flat_key("latency_ms_p95", tier)] = round_or_none(dist.p95, 3)
        for tier, dist in self.llm_latency_by_tier.items():
            flat[flat_key("llm_latency_ms_p95", tier)] = round_or_none(dist.p95, 3)
        return {
            **flat,
            "partition": self.partition,
            "latency_ms_by_tier": {t: d.to_dict() for t, d in self.latency_by_tier.items()},
            "llm_latency_ms_by_tier": {t: d.to_dict() for t, d in self.llm_latency_by_tier.items()},
            "step_duration_s": {k: d.to_dict() for k, d in self.step_durations.items()},
            "step_status": self.step_status,
            "rates": {"llm_error": self.llm_errors.to_dict(), "fallback": self.fallback.to_dict(),
                      "llm_answered": self.llm_answered.to_dict(),
                      "step_failure": self.step_failures.to_dict(), "step_retry": self.step_retries.to_dict(),
                      "outbox_retry": self.outbox_retries.to_dict(), "cache_hit": self.cache_hits.to_dict()},
            "llm_errors_by_outcome": self.llm_errors_by_outcome,
            "fallback_by_kind": self.fallback_by_kind,
            "circuit_by_tier": self.circuit_by_tier,
            "unavailable": self.unavailable,
        }


def _distributions(groups: Mapping[str, list[float]]) -> dict[str, Distribution]:
    return {key: Distribution.of(values) for key, values in sorted(groups.items())}


def pipeline_metrics(partition: str, enriched: pd.DataFrame, usage: Sequence[UsageCall],
                     steps: Sequence[StepRecord | Mapping[str, Any]], outbox: Sequence[OutboxTime] = (),
                     *, serving_step: str = SERVING_STEP) -> PipelineMetrics:
    """The day's pipeline figures. `enriched`: the partition's `enriched_messages` frame;
    `usage`: its ledger rows; `steps`: the step records of the runs that materialised it (the
    latest successful `serving_step` record gives the throughput); `outbox`: its outbox rows."""
    unavailable: dict[str, str] = {
        "llm_retry_rate": "not recorded: one usage row per logical call, retries inside it "
                          "(needs an attempts column in llm_usage or ClaudeTier's on_retry recorded)",
        "circuit_openings": "breaker transitions are not recorded; circuit_openings_min counts (run, "
                            "partition, tier) with at least one refused call, a lower bound",
    }
    records = enriched.to_dict("records") if len(enriched) else []
    n = len(records)

    by_tier: dict[str, list[float]] = defaultdict(list)
    fallback_kinds: Counter[str] = Counter()
    escalated = failed = 0
    for row in records:
        by_tier[str(row["tier"])].append(float(row["latency_ms"]))
        parts = fallback_parts(row.get("fallback_reason"))
        escalated += any(t == "local" and k == "confidence" for t, k in parts)
        kinds = {k if t != "local" else f"local_{k}" for t, k in parts if _is_failure(t, k)}
        failed += bool(kinds)
        fallback_kinds.update(kinds)
    if n == 0:
        unavailable["latency"] = "no messages in the partition"

    # Ledger latency: calls that went to the network. Cache hits and batch answers carry 0 ms
    # (nothing measured), a refusal by an open breaker never left the process.
    llm_by_tier: dict[str, list[float]] = defaultdict(list)
    for call in usage:
        if not call.cache_hit and not call.batch and call.outcome != CIRCUIT_OPEN:
            llm_by_tier[call.tier].append(float(call.latency_ms))
    outcomes = Counter(c.outcome for c in usage)
    answers = [c for c in usage if c.outcome == "ok"]
    if not usage:
        unavailable["llm"] = "no LLM calls recorded for the partition"

    circuit: dict[str, dict[str, int]] = {}
    breakers_opened: set[tuple[str | None, str | None, str]] = set()
    for call in usage:
        if call.outcome == CIRCUIT_OPEN:
            breakers_opened.add((call.run_id, call.partition, call.tier))
            entry = circuit.setdefault(call.tier, {"rejections": 0, "openings_min": 0})
            entry["rejections"] += 1
    for _, _, tier in breakers_opened:
        circuit[tier]["openings_min"] += 1

    step_records = [StepRecord.of(s) for s in steps]
    durations: dict[str, list[float]] = defaultdict(list)
    status: dict[str, Counter[str]] = defaultdict(Counter)
    for s in step_records:
        status[s.step_key][s.status] += 1
        if s.duration_s is not None:
            durations[s.step_key].append(s.duration_s)
    serving = [s for s in step_records if s.step_key == serving_step and s.status == STEP_SUCCESS
               and s.duration_s is not None]
    serving_s = max(serving, key=lambda s: s.end_time or 0.0).duration_s if serving else None
    throughput = None
    if serving_s is None:
        unavailable["throughput"] = f"no successful {serving_step} step record with start and end times"
    elif serving_s <= 0 or n == 0:
        unavailable["throughput"] = "zero messages or a zero-length serving step"
    else:
        throughput = n / serving_s
    if not step_records:
        unavailable["steps"] = "no step records passed in"

    attempted = [o for o in outbox if o.attempts > 0]
    return PipelineMetrics(
        partition=partition, messages=n,
        latency_by_tier=_distributions(by_tier), latency_all=Distribution.of(v for vs in by_tier.values() for v in vs),
        llm_latency_by_tier=_distributions(llm_by_tier),
        llm_latency_all=Distribution.of(v for vs in llm_by_tier.values() for v in vs),
        step_durations=_distributions(durations),
        step_status={k: dict(sorted(c.items())) for k, c in sorted(status.items())},
        serving_step_s=serving_s, throughput_msgs_per_s=throughput,
        llm_calls=len(usage), llm_errors=Proportion(len(usage) - outcomes.get("ok", 0), len(usage)),
        llm_errors_by_outcome={k: v for k, v in sorted(outcomes.items()) if k != "ok"},
        escalated_to_llm=escalated, llm_answered=Proportion(sum(is_llm_tier(str(r["tier"])) for r in records), n),
        fallback=Proportion(failed, n), fallback_by_kind=dict(sorted(fallback_kinds.items())),
        step_failures=Proportion(sum(s.status == STEP_FAILURE for s in step_records), len(step_records)),
        step_retries=Proportion(sum(s.attempts > 1 for s in step_records), len(step_records)),
        outbox_retries=Proportion(sum(o.attempts > 1 for o in attempted), len(attempted)),
        circuit_open_rejections=outcomes.get(CIRCUIT_OPEN, 0), circuit_openings_min=len(breakers_opened),
        circuit_by_tier=dict(sorted(circuit.items())),
        cache_hits=Proportion(sum(c.cache_hit for c in answers), len(answers)),
        unavailable=dict(sorted(unavailable.items())),
    )


__all__ = ["PipelineMetrics", "SERVING_STEP", "StepRecord", "fallback_parts", "pipeline_metrics"]
