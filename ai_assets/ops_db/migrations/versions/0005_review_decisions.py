"""Layer 5: reviewers and their sign-in attempts, review decisions (never overwritten), and
on review items the model's suggestions, a due time, the queue (standard or senior) and a
version for concurrent reviewers. Items get the status `decided` between a reviewer's decision
and the run that applies it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Frozen: plain SQLAlchemy types, no imports from the models (see 0001).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('login_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_key_at', ['key', 'at'], unique=False)

    op.create_table('reviewers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('reviewer', 'senior', 'admin')", name=op.f('ck_reviewers_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviewers')),
    sa.UniqueConstraint('name', name=op.f('uq_reviewers_name'))
    )
    op.create_table('review_decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('review_item_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('action_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('intent', sa.String(length=100), nullable=True),
    sa.Column('compensation', sa.String(length=24), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('reviewer', sa.String(length=200), nullable=False),
    sa.Column('reviewer_role', sa.String(length=16), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('item_version_seen', sa.Integer(), nullable=True),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('case_version_seen', sa.Integer(), nullable=True),
    sa.Column('model_intent', sa.String(length=100), nullable=False),
    sa.Column('model_confidence', sa.Double(), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('model_suggestions', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('applied_run_id', sa.String(length=64), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.CheckConstraint("compensation IS NULL OR compensation IN ('followup_email', 'reopen_case', 'requeue')", name=op.f('ck_review_decisions_compensation')),
    sa.CheckConstraint("kind <> 'override' OR (action_id IS NOT NULL AND compensation IS NOT NULL AND reason IS NOT NULL AND length(trim(reason)) > 0)", name=op.f('ck_review_decisions_override_has_reason')),
    sa.CheckConstraint("kind IN ('approve', 'correct', 'override', 'reject_spam', 'reject_out_of_scope')", name=op.f('ck_review_decisions_kind')),
    sa.CheckConstraint("reviewer_role IN ('reviewer', 'senior', 'admin')", name=op.f('ck_review_decisions_reviewer_role')),
    sa.CheckConstraint("status IN ('pending', 'applied', 'conflict', 'failed')", name=op.f('ck_review_decisions_status')),
    sa.CheckConstraint('(review_item_id IS NULL) <> (action_id IS NULL)', name=op.f('ck_review_decisions_one_target')),
    sa.ForeignKeyConstraint(['action_id'], ['actions.id'], name=op.f('fk_review_decisions_action_id_actions')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_review_decisions_case_id_cases')),
    sa.ForeignKeyConstraint(['review_item_id'], ['review_items.id'], name=op.f('fk_review_decisions_review_item_id_review_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_decisions'))
    )
    with op.batch_alter_table('review_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_decisions_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_review_decisions_status', ['status', 'id'], unique=False)
        batch_op.create_index('uq_review_decisions_one_per_action', ['action_id'], unique=True, postgresql_where=sa.text("status <> 'conflict' AND action_id IS NOT NULL"), sqlite_where=sa.text("status <> 'conflict' AND action_id IS NOT NULL"))
        batch_op.create_index('uq_review_decisions_one_per_item', ['review_item_id'], unique=True, postgresql_where=sa.text("status <> 'conflict' AND review_item_id IS NOT NULL"), sqlite_where=sa.text("status <> 'conflict' AND review_item_id IS NOT NULL"))

    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suggestions', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), server_default=sa.text("'[]'"), nullable=False))
        batch_op.add_column(sa.Column('model_version', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('review_queue', sa.String(length=16), server_default='standard', nullable=False))
        batch_op.add_column(sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False))
        batch_op.create_index('ix_review_items_queue_order', ['status', 'review_queue', 'priority', 'due_at'], unique=False)
        batch_op.drop_constraint(op.f('ck_review_items_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_review_items_status'), "status IN ('open', 'decided', 'resolved')")
        batch_op.create_check_constraint(op.f('ck_review_items_review_queue'),
                                         "review_queue IN ('standard', 'senior')")
    # Items written before due times were recorded are due from their creation.
    op.execute("UPDATE review_items SET due_at = created_at WHERE due_at IS NULL")



def downgrade() -> None:
    op.execute("UPDATE review_items SET status = 'open' WHERE status = 'decided'")
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_review_items_review_queue'), type_='check')
        batch_op.drop_constraint(op.f('ck_review_items_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_review_items_status'), "status IN ('open', 'resolved')")
        batch_op.drop_index('ix_review_items_queue_order')
        batch_op.drop_column('version')
        batch_op.drop_column('escalated_at')
        batch_op.drop_column('review_queue')
        batch_op.drop_column('due_at')
        batch_op.drop_column('model_version')
        batch_op.drop_column('suggestions')

    with op.batch_alter_table('review_decisions', schema=None) as batch_op:
        batch_op.drop_index('uq_review_decisions_one_per_item', postgresql_where=sa.text("status <> 'conflict' AND review_item_id IS NOT NULL"), sqlite_where=sa.text("status <> 'conflict' AND review_item_id IS NOT NULL"))
        batch_op.drop_index('uq_review_decisions_one_per_action', postgresql_where=sa.text("status <> 'conflict' AND action_id IS NOT NULL"), sqlite_where=sa.text("status <> 'conflict' AND action_id IS NOT NULL"))
        batch_op.drop_index('ix_review_decisions_status')
        batch_op.drop_index(batch_op.f('ix_review_decisions_message_id'))

    op.drop_table('review_decisions')
    op.drop_table('reviewers')
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_key_at')

    op.drop_table('login_attempts')
