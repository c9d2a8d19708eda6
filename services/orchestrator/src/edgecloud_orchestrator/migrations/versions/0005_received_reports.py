"""The ids of node reports received, to apply a repeated report once

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "received_reports",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("received_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_received_reports_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("received_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_received_reports_at"))

    op.drop_table("received_reports")
