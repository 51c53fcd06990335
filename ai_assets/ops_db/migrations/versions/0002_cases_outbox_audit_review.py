"""Layer 3: cases, case history, the action ledger, outbox, deliveries, audit log, review items.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Frozen: plain SQLAlchemy types, no imports from the models (see 0001).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('partition', sa.String(length=64), nullable=True),
    sa.Column('policy_version', sa.String(length=64), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_message_id'), ['message_id'], unique=False)

    op.create_table('cases',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('priority', sa.String(length=4), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('intent', sa.String(length=100), nullable=False),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('last_message_id', sa.String(length=64), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.CheckConstraint("status IN ('open', 'in_progress', 'closed')", name=op.f('ck_cases_status')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_cases_version_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('uq_cases_one_open_per_customer_queue', ['customer_id', 'queue'], unique=True, postgresql_where=sa.text("status <> 'closed'"), sqlite_where=sa.text("status <> 'closed'"))

    op.create_table('actions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('decision', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('policy_version', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('partition', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome IN ('acted', 'review', 'conflict')", name=op.f('ck_actions_outcome')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_actions_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_actions')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_actions_idempotency_key')),
    sa.UniqueConstraint('message_id', 'policy_version', name=op.f('uq_actions_message_id_policy_version'))
    )
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_actions_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_actions_partition'), ['partition'], unique=False)

    op.create_table('case_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('change', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_history_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_history')),
    sa.UniqueConstraint('case_id', 'version', name=op.f('uq_case_history_case_id_version'))
    )
    op.create_table('review_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('intent', sa.String(length=100), nullable=False),
    sa.Column('confidence', sa.Double(), nullable=True),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('priority', sa.String(length=4), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=200), nullable=True),
    sa.Column('resolution', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_review_items_status')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_review_items_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_items')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_review_items_idempotency_key'))
    )
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_items_message_id'), ['message_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('action_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('partition', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('email', 'webhook')", name=op.f('ck_outbox_kind')),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'dead')", name=op.f('ck_outbox_status')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbox_attempts_non_negative')),
    sa.ForeignKeyConstraint(['action_id'], ['actions.id'], name=op.f('fk_outbox_action_id_actions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_outbox_idempotency_key'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_message_id'), ['message_id'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('outbox_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_deliveries_outbox_id_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('outbox_id', 'attempt', name=op.f('uq_deliveries_outbox_id_attempt'))
    )


def downgrade() -> None:
    op.drop_table('deliveries')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_message_id'))
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_items_message_id'))

    op.drop_table('review_items')
    op.drop_table('case_history')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_actions_partition'))
        batch_op.drop_index(batch_op.f('ix_actions_message_id'))

    op.drop_table('actions')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('uq_cases_one_open_per_customer_queue', postgresql_where=sa.text("status <> 'closed'"), sqlite_where=sa.text("status <> 'closed'"))

    op.drop_table('cases')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_message_id'))

    op.drop_table('audit_log')
