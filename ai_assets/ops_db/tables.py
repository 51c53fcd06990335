"""The operations database schema: SQLAlchemy 2 declarative models.

Every change to these models ships with an Alembic migration in `migrations/versions/`;
a test checks that autogenerate finds no difference between the two.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ai_assets.ops_db.types import JSON_DOC, Money, UtcDateTime, utcnow

sql = text  # for classes with a `text` column, whose body shadows the name

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


# --- Layer 3: acting on messages -------------------------------------------------------


class CaseStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"  # a person has taken it
    CLOSED = "closed"


class ActionOutcome(StrEnum):
    ACTED = "acted"          # case opened or updated, outbox rows written
    REVIEW = "review"        # sent to a person instead (triage said so)
    CONFLICT = "conflict"    # a person changed the case after the pipeline read it: refused, sent to review


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"            # gave up after the maximum attempts: an alert, a person re-queues it


class OutboxKind(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class ReviewStatus(StrEnum):
    OPEN = "open"
    DECIDED = "decided"      # a reviewer's decision is recorded; the review_actions run applies it
    RESOLVED = "resolved"    # the decision was applied (or the item was closed by the pipeline)


class ReviewQueue(StrEnum):
    STANDARD = "standard"
    SENIOR = "senior"        # items past their due time are raised here, once


class ReviewerRole(StrEnum):
    REVIEWER = "reviewer"    # decides items of the standard queue
    SENIOR = "senior"        # also the senior queue and overrides of automatic actions
    ADMIN = "admin"          # everything, and exports


class DecisionKind(StrEnum):
    APPROVE = "approve"                        # the model's intent is right: its policy action runs
    CORRECT = "correct"                        # another intent: its policy action runs
    OVERRIDE = "override"                      # an automatic action was wrong: a compensating action runs
    REJECT_SPAM = "reject_spam"                # nothing is sent; no training row
    REJECT_OUT_OF_SCOPE = "reject_out_of_scope"  # nothing is sent; a training row labelled out_of_scope


class Compensation(StrEnum):
    """What an override does about the automatic action it undoes."""
    FOLLOWUP_EMAIL = "followup_email"  # the customer gets a correction e-mail
    REOPEN_CASE = "reopen_case"        # the case is reopened (or kept open) under the corrected intent
    REQUEUE = "requeue"                # the case moves to the corrected intent's queue and priority


class DecisionStatus(StrEnum):
    PENDING = "pending"      # recorded by the web app, not yet applied
    APPLIED = "applied"      # its case change, outbox rows and audit rows are committed
    CONFLICT = "conflict"    # the case changed after the reviewer read it: nothing applied, item reopened
    FAILED = "failed"        # could not be applied (reason in `result`); nothing applied


class Case(Base):
    """A customer's case in one queue: the CRM record the pipeline and people both edit.
    `version` is bumped by every change; a write names the version it read (optimistic
    concurrency), so nobody's change is overwritten unseen."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN.value)
    intent: Mapped[str] = mapped_column(String(100))
    assignee: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    message_count: Mapped[int] = mapped_column(default=0)
    last_message_id: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        CheckConstraint(_in("status", CaseStatus), name="status"),
        CheckConstraint("version >= 1", name="version_positive"),
        # One open case per customer and queue; a closed case is history.
        Index("uq_cases_one_open_per_customer_queue", "customer_id", "queue", unique=True,
              postgresql_where=text("status <> 'closed'"), sqlite_where=text("status <> 'closed'")),
    )


class CaseHistory(Base):
    """Every version of every case: who changed what, from which message."""

    __tablename__ = "case_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id"))
    version: Mapped[int]
    actor: Mapped[str] = mapped_column(String(200))
    change: Mapped[dict[str, Any]]
    message_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("case_id", "version"),)


class Action(Base):
    """The ledger of acted-on messages. `idempotency_key` = hash(message id, action, policy
    version, content hash): a re-run, a backfill or a retried step finds its key and does
    nothing twice. `content_hash` (customer, channel, text) tells a re-delivery of a message
    from another message that reuses its id ('' on rows written before it was recorded)."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    content_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    action: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("cases.id"))
    run_id: Mapped[str | None] = mapped_column(String(64))
    partition: Mapped[str | None] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("outcome", ActionOutcome), name="outcome"),
        # One action per message and policy version, whatever the action: a message the
        # model reads differently on a re-run is not acted on a second time.
        UniqueConstraint("message_id", "policy_version"),
    )


class OutboxMessage(Base):
    """An e-mail or webhook event to deliver, written in the same transaction as its action.
    `idempotency_key` is also the Message-ID / Idempotency-Key the receiver sees."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    action_id: Mapped[int] = mapped_column(BigId, ForeignKey("actions.id"))
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    partition: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(_in("status", OutboxStatus), name="status"),
        CheckConstraint(_in("kind", OutboxKind), name="kind"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )


class Delivery(Base):
    """One delivery attempt of one outbox row."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(BigId, ForeignKey("outbox.id"))
    attempt: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | failed | dead
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int] = mapped_column(default=0)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("outbox_id", "attempt"),)


class AuditEntry(Base):
    """Append-only story of every message: model call, decision, action, conflict, delivery.
    Holds masked text only and no secrets."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(64))
    partition: Mapped[str | None] = mapped_column(String(64))
    policy_version: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReviewItem(Base):
    """A message a person must decide on, with why and what the model thought."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200))
    intent: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float | None]
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(4))
    text: Mapped[str] = mapped_column(Text)  # PII-masked, as validated
    case_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("cases.id"))
    status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[dict[str, Any] | None]
    # What the model said beyond its answer: the local model's best labels with calibrated
    # scores, best first ([[intent, score], ...]); [] where no model answered.
    suggestions: Mapped[list[Any]] = mapped_column(JSON_DOC, default=list, server_default=sql("'[]'"))
    model_version: Mapped[str | None] = mapped_column(String(64))
    # Due time from the routing policy's review times per priority; NULL only on rows written
    # before it was recorded (read as created_at: already due).
    due_at: Mapped[datetime | None]
    review_queue: Mapped[str] = mapped_column(String(16), default=ReviewQueue.STANDARD.value,
                                              server_default=ReviewQueue.STANDARD.value)
    escalated_at: Mapped[datetime | None]
    # Bumped by every change of the item (decided, reopened, escalated): a decision names the
    # version its reviewer saw, so two reviewers cannot both decide one item.
    version: Mapped[int] = mapped_column(default=1, server_default=sql("1"))

    __table_args__ = (
        CheckConstraint(_in("status", ReviewStatus), name="status"),
        CheckConstraint(_in("review_queue", ReviewQueue), name="review_queue"),
        Index("ix_review_items_queue_order", "status", "review_queue", "priority", "due_at"),
    )


class Reviewer(Base):
    """A person who signs in to the review app. Only a memory-hard hash of the password is kept."""

    __tablename__ = "reviewers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint(_in("role", ReviewerRole), name="role"),)


class LoginAttempt(Base):
    """Sign-in attempts, for rate limiting by name and by client address across processes."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))  # "name:<name>" or "ip:<address>"
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_login_attempts_key_at", "key", "at"),)


class ReviewDecision(Base):
    """A reviewer's decision on a review item, or an override of an automatic action: who,
    when, why, what the model had said — never overwritten. `status` follows it through the
    run that applies it; a conflicted decision stays as history and the item is reopened."""

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    review_item_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("review_items.id"))
    action_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("actions.id"))  # an override's target
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)  # PII-masked, as validated: the training row's input
    kind: Mapped[str] = mapped_column(String(24))
    intent: Mapped[str | None] = mapped_column(String(100))  # the person's answer (None: spam)
    compensation: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(200))
    reviewer_role: Mapped[str] = mapped_column(String(16))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    item_version_seen: Mapped[int | None]
    case_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("cases.id"))
    case_version_seen: Mapped[int | None]
    model_intent: Mapped[str] = mapped_column(String(100))
    model_confidence: Mapped[float | None]
    model_version: Mapped[str | None] = mapped_column(String(64))
    model_suggestions: Mapped[list[Any]] = mapped_column(JSON_DOC, default=list)
    status: Mapped[str] = mapped_column(String(16), default=DecisionStatus.PENDING.value)
    applied_at: Mapped[datetime | None]
    applied_run_id: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        CheckConstraint(_in("kind", DecisionKind), name="kind"),
        CheckConstraint(_in("status", DecisionStatus), name="status"),
        CheckConstraint(f"compensation IS NULL OR {_in('compensation', Compensation)}", name="compensation"),
        CheckConstraint(_in("reviewer_role", ReviewerRole), name="reviewer_role"),
        CheckConstraint("(review_item_id IS NULL) <> (action_id IS NULL)", name="one_target"),
        CheckConstraint("kind <> 'override' OR (action_id IS NOT NULL AND compensation IS NOT NULL "
                        "AND reason IS NOT NULL AND length(trim(reason)) > 0)", name="override_has_reason"),
        # One live decision per item and per overridden action: the second of two reviewers
        # deciding at once is refused by the database too. Conflicted decisions are history.
        Index("uq_review_decisions_one_per_item", "review_item_id", unique=True,
              postgresql_where=sql("status <> 'conflict' AND review_item_id IS NOT NULL"),
              sqlite_where=sql("status <> 'conflict' AND review_item_id IS NOT NULL")),
        Index("uq_review_decisions_one_per_action", "action_id", unique=True,
              postgresql_where=sql("status <> 'conflict' AND action_id IS NOT NULL"),
              sqlite_where=sql("status <> 'conflict' AND action_id IS NOT NULL")),
        Index("ix_review_decisions_status", "status", "id"),
    )


# --- Layer 4: alerts that a person receives once --------------------------------------


class AlertStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class AlertSeverity(StrEnum):
    """The labels of `ai_assets.monitoring.alerts.Severity` (ops_db cannot import monitoring)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class AlertNoticeKind(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertRow(Base):
    """One alert condition in one window (`source`, `condition`, `time_window`: unique, so two sensor
    ticks raising it at once share one row and one notice). Holds the latest figures, what was
    last sent (for the worse-than-before and cooldown rules), and a notice still owed to some
    channels (`pending_*`, retried at `retry_at`). Never holds a channel's URL or credentials."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    condition: Mapped[str] = mapped_column(String(200))
    time_window: Mapped[str] = mapped_column(String(64))  # "window" is reserved in PostgreSQL
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.OPEN.value)
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    figure: Mapped[float | None]
    threshold: Mapped[float | None]
    higher_is_worse: Mapped[bool] = mapped_column(Boolean, default=True)
    partition: Mapped[str | None] = mapped_column(String(64))
    link: Mapped[str | None] = mapped_column(Text)  # a UI path, or a full URL
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    resolved_at: Mapped[datetime | None]
    raised_count: Mapped[int] = mapped_column(default=1)  # raises in the current episode
    notices: Mapped[int] = mapped_column(default=0)  # notices decided so far: the sequence of the latest
    sent_severity: Mapped[str | None] = mapped_column(String(16))
    sent_figure: Mapped[float | None]
    last_sent_at: Mapped[datetime | None]
    pending_kind: Mapped[str | None] = mapped_column(String(16))
    pending_reason: Mapped[str | None] = mapped_column(String(32))
    pending_channels: Mapped[list[str]] = mapped_column(JSON_DOC, default=list)
    retry_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)  # failed attempts of the pending notice
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("source", "condition", "time_window"),
        CheckConstraint(_in("status", AlertStatus), name="status"),
        CheckConstraint(_in("severity", AlertSeverity), name="severity"),
        CheckConstraint(f"sent_severity IS NULL OR {_in('sent_severity', AlertSeverity)}", name="sent_severity"),
        CheckConstraint(f"pending_kind IS NULL OR {_in('pending_kind', AlertNoticeKind)}", name="pending_kind"),
        CheckConstraint("raised_count >= 0 AND notices >= 0 AND attempts >= 0", name="counts_non_negative"),
        Index("ix_alerts_pending", "pending_kind", "retry_at"),
    )
