"""Containers holding their node's hardware interfaces

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 22:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interface_claims",
        sa.Column("container_id", sa.String(length=36), nullable=False),
        sa.Column("interface", sa.String(length=63), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("claimed_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("container_id", "interface"),
    )
    with op.batch_alter_table("interface_claims", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interface_claims_device_interface", ["device_key", "interface"], unique=False
        )
    op.create_table(
        "interface_locks",
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("interface", sa.String(length=63), nullable=False),
        sa.Column("taken_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_key", "interface"),
    )


def downgrade() -> None:
    op.drop_table("interface_locks")
    with op.batch_alter_table("interface_claims", schema=None) as batch_op:
        batch_op.drop_index("ix_interface_claims_device_interface")
    op.drop_table("interface_claims")
