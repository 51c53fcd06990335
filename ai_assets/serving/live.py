"""Serving live traffic: the production model from the registry, the cascade, and one record
per message. `enriched_messages` and `ai-assets evaluate` both go through `serve`, so an
evaluation measures exactly what production does."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.registry import ModelRecord
from ai_assets.serving.cascade import Enrichment, ModelCascade
from ai_assets.serving.intent.automation import NEEDS_HUMAN, AutomationPolicy, is_llm_tier
from ai_assets.serving.intent.intent_model import INTENT_MODEL, IntentModel
from ai_assets.serving.intent.out_of_scope import OUT_OF_SCOPE
from ai_assets.serving.intent.text_encoders import encoder_named
from ai_assets.serving.outcomes import TierAnswer
from ai_assets.serving.resilience.budget import Budget
from ai_assets.serving.resilience.deadline import Deadline

# Labels offered to a reviewer per message (keys 1-5 in the review app pick them).
SUGGESTIONS = 5


def suggestions_json(answer: TierAnswer | None) -> str:
    """The `suggestions` column: `[[intent, score], ...]` of the local model, best first."""
    pairs = answer.suggestions if answer is not None else ()
    return json.dumps([[intent, round(float(score), 6)] for intent, score in pairs])


class ArtifactError(RuntimeError):
    """The registry's production version cannot be loaded: roll back or retrain."""


@dataclass
class ProductionModel:
    record: ModelRecord
    model: IntentModel

    @property
    def version(self) -> str:
        return self.record.label

    def predict(self, texts: Sequence[str]):
        return self.model.predict(texts, top_k=SUGGESTIONS)


@lru_cache(maxsize=4)
def _load_artifact(uri: str, encoder_name: str) -> IntentModel:
    # A version's artifact never changes, so one load per process serves every partition.
    return IntentModel.load(Path(uri), encoder=encoder_named(encoder_name))


def production_model(db: OpsDb, name: str = INTENT_MODEL) -> ProductionModel | None:
    """The production version with its model loaded, or None when there is none yet."""
    record = db.registry.get_production(name)
    if record is None:
        return None
    try:
        model = _load_artifact(record.artifact_uri, record.metrics.get("encoder", "minilm"))
    except Exception as exc:  # missing, truncated, corrupt: unpickling raises nearly anything
        raise ArtifactError(f"{record.label} artifact {record.artifact_uri} cannot be loaded "
                            f"({type(exc).__name__}: {exc}); `ai-assets model rollback` restores "
                            "the previous version") from exc
    return ProductionModel(record, model)


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.00000001")))


class QueueRoute(Protocol):
    queue: str
    priority: str


class QueuePolicy(Protocol):
    """Where an intent is handled (`ai_assets.actions.routing_policy.RoutingPolicy`): enrichment
    records the queue and priority; the policy itself belongs to the actions layer above."""
    version: str

    def route(self, intent: str) -> QueueRoute: ...


@dataclass
class LiveServing:
    """Everything one run needs to serve messages the production way."""

    model: ProductionModel | None
    cascade: ModelCascade
    automation: AutomationPolicy
    policy: QueuePolicy
    budget: Budget
    deadline: Deadline
    prompt_version: str

    @property
    def local_version(self) -> str:
        return self.model.version if self.model else "none"

    def serve(self, texts: Sequence[str], *, use_batch: bool = False) -> list[dict[str, Any]]:
        """One enrichment record per text, in order (columns: ENRICHED_COLUMNS less those
        `enriched_messages` passes through from validated_messages: ids, channel, time, text)."""
        enrichments: list[Enrichment] = self.cascade.enrich(list(texts), self.budget, self.deadline,
                                                           use_batch=use_batch)
        records = []
        for text, e in zip(texts, enrichments, strict=True):
            a = e.answer
            route = self.policy.route(OUT_OF_SCOPE if a.intent == NEEDS_HUMAN else a.intent)
            not_automated = self.automation.decide(text, a.intent, a.confidence, a.tier,
                                                   local_intent=e.local.intent if e.local else None)
            records.append({
                "intent": a.intent,
                "confidence": round(float(a.confidence), 6),
                "automated": not_automated is None,
                "review_reason": not_automated,
                "queue": route.queue,
                "priority": route.priority,
                "summary": a.summary,
                "tier": a.tier,
                "answered_by": a.model,
                "fallback_reason": e.fallback_reason or None,
                "latency_ms": round(float(a.latency_ms), 3),
                "input_tokens": int(a.input_tokens),
                "output_tokens": int(a.output_tokens),
                "cost_usd": _money(a.cost_usd),
                "cache_hit": bool(a.cache_hit),
                "batch": bool(a.batch),
                "local_model_version": self.local_version,
                "prompt_version": self.prompt_version,
                "policy_version": self.policy.version,
                "suggestions": suggestions_json(e.local),
            })
        return records


def serving_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the UI shows for a partition: tiers, automation, cost, latency, cache."""
    llm = [r for r in records if is_llm_tier(r["tier"])]
    latencies = np.array([r["latency_ms"] for r in records], dtype=float)
    cost = sum((Decimal(str(r["cost_usd"])) for r in records), Decimal(0))
    return {
        "per_tier": dict(sorted(Counter(r["tier"] for r in records).items())),
        "automated": sum(r["automated"] for r in records),
        "automated_share": round(sum(r["automated"] for r in records) / len(records), 6) if records else 0.0,
        "review_reasons": dict(sorted(Counter(r["review_reason"].split(":")[0]
                                              for r in records if r["review_reason"]).items())),
        "cost_usd": f"{cost:.6f}",
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 3) if len(records) else 0.0,
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3) if len(records) else 0.0,
        "llm_answers": len(llm),
        "cache_hit_rate": round(sum(r["cache_hit"] for r in llm) / len(llm), 6) if llm else 0.0,
        "input_tokens": sum(r["input_tokens"] for r in records),
        "output_tokens": sum(r["output_tokens"] for r in records),
        "fallbacks": sum(1 for r in records if r["fallback_reason"]),
    }


__all__ = ["INTENT_MODEL", "ArtifactError", "LiveServing", "ProductionModel", "production_model",
           "serving_summary"]
