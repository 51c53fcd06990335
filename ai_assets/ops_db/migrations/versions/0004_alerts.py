"""Layer 4: the alerts table, one row per alert condition and window (source, condition,
time_window: unique), with what was last sent and any notice still owed to a channel.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Frozen: plain SQLAlchemy types, no imports from the models (see 0001).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('condition', sa.String(length=200), nullable=False),
    sa.Column('time_window', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('figure', sa.Double(), nullable=True),
    sa.Column('threshold', sa.Double(), nullable=True),
    sa.Column('higher_is_worse', sa.Boolean(), nullable=False),
    sa.Column('partition', sa.String(length=64), nullable=True),
    sa.Column('link', sa.Text(), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('raised_count', sa.Integer(), nullable=False),
    sa.Column('notices', sa.Integer(), nullable=False),
    sa.Column('sent_severity', sa.String(length=16), nullable=True),
    sa.Column('sent_figure', sa.Double(), nullable=True),
    sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pending_kind', sa.String(length=16), nullable=True),
    sa.Column('pending_reason', sa.String(length=32), nullable=True),
    sa.Column('pending_channels', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("pending_kind IS NULL OR pending_kind IN ('firing', 'resolved')", name=op.f('ck_alerts_pending_kind')),
    sa.CheckConstraint("sent_severity IS NULL OR sent_severity IN ('info', 'warning', 'error', 'critical')", name=op.f('ck_alerts_sent_severity')),
    sa.CheckConstraint("severity IN ('info', 'warning', 'error', 'critical')", name=op.f('ck_alerts_severity')),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_alerts_status')),
    sa.CheckConstraint('raised_count >= 0 AND notices >= 0 AND attempts >= 0', name=op.f('ck_alerts_counts_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('source', 'condition', 'time_window', name=op.f('uq_alerts_source_condition_time_window'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_last_seen_at'), ['last_seen_at'], unique=False)
        batch_op.create_index('ix_alerts_pending', ['pending_kind', 'retry_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_pending')
        batch_op.drop_index(batch_op.f('ix_alerts_last_seen_at'))

    op.drop_table('alerts')
