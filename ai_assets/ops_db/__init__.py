"""The operations database: model registry, LLM cache and usage, cases, actions, outbox, audit.

Pure SQLAlchemy 2 + Alembic, no Dagster. A SQLite file by default, PostgreSQL in
production; the same migrations and tests run on both.

    db = OpsDb.open("sqlite:///var/ops.db")      # engine + `alembic upgrade head`
    v = db.registry.register_candidate("intent", metrics={...}, artifact_uri=...,
                                       training_data_fingerprint=..., confidence_threshold=0.71)
    db.registry.promote("intent", v.version, actor="ci", reason="passed the gate")
    key = cache_key(model, prompt_version, text)
    answer = db.cache.get(key)        # None on a miss; a hit is counted
    if answer is None:
        answer = call_the_model(...)
        db.cache.put(key, model=model, prompt_version=prompt_version, response=answer)
    db.usage.record(tier="llm", model=..., input_tokens=..., cost_usd=Decimal("0.000321"), run_id=...)
    db.usage.spent_usd(since=day_start, until=day_end)
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from ai_assets.ops_db.audit import AuditContext, AuditEvent, AuditLog, MessageStory
from ai_assets.ops_db.cases import CaseConflict, CaseRef, CaseStore, pipeline_actor
from ai_assets.ops_db.engine import Sessions, create_engine_for, default_url
from ai_assets.ops_db.llm_cache import CacheEntry, CacheWrite, ResponseCache, cache_key, text_hash
from ai_assets.ops_db.migrate import current_revision, head_revision, is_current, upgrade
from ai_assets.ops_db.registry import (
    ModelEventRecord,
    ModelRecord,
    ModelRegistry,
    NoRollbackTarget,
    RegistryError,
    UnknownModelVersion,
)
from ai_assets.ops_db.tables import Base, LlmCacheEntry, LlmUsage, ModelAction, ModelEvent, ModelStatus, ModelVersion
from ai_assets.ops_db.types import as_money
from ai_assets.ops_db.usage import TierUsage, UsageEntry, UsageLedger, UsageSummary


class OpsDb:
    """The operations database on one Engine: `registry`, `cache`, `usage`, `cases`, `audit`."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = Sessions(engine)
        self.registry = ModelRegistry(self.sessions)
        self.cache = ResponseCache(self.sessions)
        self.usage = UsageLedger(self.sessions)
        self.cases = CaseStore(self.sessions)
        self.audit = AuditLog(self.sessions)

    @classmethod
    def open(cls, url: str | URL | None = None, *, migrate: bool = True) -> OpsDb:
        """Connect to `url` (default: `default_url()`), upgrading the schema to head first."""
        engine = create_engine_for(url or default_url())
        if migrate:
            upgrade(engine)
        return cls(engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> OpsDb:
        return self

    def __exit__(self, *exc) -> None:
        self.dispose()


__all__ = [
    "AuditContext", "AuditEvent", "AuditLog", "Base", "CaseConflict", "CaseRef", "CaseStore", "MessageStory",
    "pipeline_actor", "CacheEntry", "CacheWrite", "LlmCacheEntry", "LlmUsage", "ModelAction", "ModelEvent",
    "ModelEventRecord", "ModelRecord", "ModelRegistry", "ModelStatus", "ModelVersion", "NoRollbackTarget",
    "OpsDb", "RegistryError", "ResponseCache", "Sessions", "TierUsage", "UnknownModelVersion", "UsageEntry",
    "UsageLedger", "UsageSummary", "as_money", "cache_key", "create_engine_for", "current_revision",
    "default_url", "head_revision", "is_current", "text_hash", "upgrade",
]
