"""The operations database schema: SQLAlchemy 2 declarative models.

Every change to these models ships with an Alembic migration in `migrations/versions/`;
a test checks that autogenerate finds no difference between the two.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Double, ForeignKeyConstraint, Index,
                        Integer, MetaData, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ai_assets.ops_db.types import JSON_DOC, Money, UtcDateTime, utcnow

# Deterministic constraint names on every dialect: later migrations (and SQLite's batch
# mode, which rebuilds tables) can only alter a constraint they can name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT ids where rows accumulate without bound; SQLite only auto-increments INTEGER
# PRIMARY KEY (its 64-bit rowid), so it keeps INTEGER there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UtcDateTime(),
        Decimal: Money(),
        dict[str, Any]: JSON_DOC,
        float: Double(),
    }


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    PRODUCTION = "production"
    RETIRED = "retired"


class ModelAction(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    RETIRE = "retire"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class ModelVersion(Base):
    """The model registry: every trained version, its evidence and its status."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.CANDIDATE.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_uri: Mapped[str] = mapped_column(String(1024))
    training_data_fingerprint: Mapped[str] = mapped_column(String(128))
    # Confidence at or above which the model's answer is acted on automatically, chosen
    # on the validation split so that those answers reach `target_precision`.
    confidence_threshold: Mapped[float]
    target_precision: Mapped[float]
    notes: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(_in("status", ModelStatus), name="status"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("confidence_threshold >= 0 AND confidence_threshold <= 1",
                        name="confidence_threshold_range"),
        CheckConstraint("target_precision > 0 AND target_precision <= 1", name="target_precision_range"),
        # At most one production version per model name, enforced by the database too
        # (the registry also serialises promotions in a transaction).
        Index("uq_model_versions_one_production_per_name", "name", unique=True,
              postgresql_where=text("status = 'production'"),
              sqlite_where=text("status = 'production'")),
    )


class ModelEvent(Base):
    """Audit of registry decisions: who promoted, rolled back or retired what, and why."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("action", ModelAction), name="action"),
        ForeignKeyConstraint(["name", "from_version"], ["model_versions.name", "model_versions.version"]),
        ForeignKeyConstraint(["name", "to_version"], ["model_versions.name", "model_versions.version"]),
    )


class LlmCacheEntry(Base):
    """LLM answers keyed by sha256(model, prompt version, normalised-text hash)."""

    __tablename__ = "llm_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(50))
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    hit_count: Mapped[int] = mapped_column(default=0)
    last_hit_at: Mapped[datetime | None]


class LlmUsage(Base):
    """One row per model call (cache hits included, at zero cost): tokens, latency, cost."""

    __tablename__ = "llm_usage"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # budget windows
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    partition: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(100))
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    latency_ms: Mapped[int] = mapped_column(default=0)
    cost_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(32), default="ok")  # "ok" or the error kind
    batch: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        CheckConstraint("input_tokens >= 0 AND output_tokens >= 0", name="tokens_non_negative"),
        CheckConstraint("latency_ms >= 0", name="latency_non_negative"),
        CheckConstraint("cost_usd >= 0", name="cost_non_negative"),
        CheckConstraint("outcome <> ''", name="outcome_not_empty"),
    )
