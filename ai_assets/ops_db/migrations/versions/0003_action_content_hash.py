"""The action ledger records each message's content hash, to tell a re-delivery (same id, same
content) from another message reusing an id (same id, other content).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Frozen: plain SQLAlchemy types, no imports from the models (see 0001). ADD COLUMN with a
constant default needs no table rebuild on SQLite, so the foreign keys to `actions` stay.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('actions', sa.Column('content_hash', sa.String(length=64), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_column('content_hash')
