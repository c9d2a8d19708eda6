"""Peer migration: where peers reach a device, what it offers them, how near they are

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("peer_url", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("collaboration_level", sa.Integer(), nullable=False, server_default="2")
        )
        batch_op.add_column(sa.Column("neighbours", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("neighbours")
        batch_op.drop_column("collaboration_level")
        batch_op.drop_column("peer_url")
