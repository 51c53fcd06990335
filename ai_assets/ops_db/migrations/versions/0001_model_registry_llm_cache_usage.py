"""Model registry, model events, LLM cache and LLM usage.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Frozen: plain SQLAlchemy types, no imports from the models. `UtcDateTime` is
TIMESTAMP WITH TIME ZONE (text of naive UTC on SQLite); `Money` is NUMERIC(18, 9)
(integer nano-dollars on SQLite, see ai_assets.ops_db.types).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
MONEY = sa.Numeric(precision=18, scale=9).with_variant(sa.BigInteger(), "sqlite")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PRODUCTION_ONLY = sa.text("status = 'production'")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("promoted_at", TIMESTAMP, nullable=True),
        sa.Column("retired_at", TIMESTAMP, nullable=True),
        sa.Column("metrics", JSON_DOC, nullable=False),
        sa.Column("artifact_uri", sa.String(length=1024), nullable=False),
        sa.Column("training_data_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("confidence_threshold", sa.Double(), nullable=False),
        sa.Column("target_precision", sa.Double(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('candidate', 'production', 'retired')",
                           name=op.f("ck_model_versions_status")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_model_versions_version_positive")),
        sa.CheckConstraint("confidence_threshold >= 0 AND confidence_threshold <= 1",
                           name=op.f("ck_model_versions_confidence_threshold_range")),
        sa.CheckConstraint("target_precision > 0 AND target_precision <= 1",
                           name=op.f("ck_model_versions_target_precision_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_versions_name_version")),
    )
    # At most one production version per name (a partial unique index: both databases have them).
    op.create_index("uq_model_versions_one_production_per_name", "model_versions", ["name"], unique=True,
                    postgresql_where=PRODUCTION_ONLY, sqlite_where=PRODUCTION_ONLY)

    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("action IN ('promote', 'rollback', 'retire')", name=op.f("ck_model_events_action")),
        sa.ForeignKeyConstraint(["name", "from_version"], ["model_versions.name", "model_versions.version"],
                                name=op.f("fk_model_events_name_from_version_model_versions")),
        sa.ForeignKeyConstraint(["name", "to_version"], ["model_versions.name", "model_versions.version"],
                                name=op.f("fk_model_events_name_to_version_model_versions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_events")),
    )
    op.create_index(op.f("ix_model_events_name"), "model_events", ["name"], unique=False)

    op.create_table(
        "llm_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("prompt_version", sa.String(length=50), nullable=False),
        sa.Column("response", JSON_DOC, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("hit_count", sa.Integer(), nullable=False),
        sa.Column("last_hit_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_llm_cache")),
    )

    op.create_table(
        "llm_usage",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("partition", sa.String(length=64), nullable=True),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("batch", sa.Boolean(), nullable=False),
        sa.CheckConstraint("input_tokens >= 0 AND output_tokens >= 0", name=op.f("ck_llm_usage_tokens_non_negative")),
        sa.CheckConstraint("latency_ms >= 0", name=op.f("ck_llm_usage_latency_non_negative")),
        sa.CheckConstraint("cost_usd >= 0", name=op.f("ck_llm_usage_cost_non_negative")),
        sa.CheckConstraint("outcome <> ''", name=op.f("ck_llm_usage_outcome_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_usage")),
    )
    op.create_index(op.f("ix_llm_usage_at"), "llm_usage", ["at"], unique=False)
    op.create_index(op.f("ix_llm_usage_run_id"), "llm_usage", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("llm_usage")
    op.drop_table("llm_cache")
    op.drop_table("model_events")
    op.drop_table("model_versions")
