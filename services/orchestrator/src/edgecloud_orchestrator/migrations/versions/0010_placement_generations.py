"""Placement generations, and the old copies nodes keep after a container moved on

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from edgecloud_servicekit.db import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_table(
        "retained_copies",
        sa.Column("container_id", sa.String(length=36), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("found_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("removed_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("container_id", "device_key"),
    )
    op.create_index("ix_retained_copies_device_key", "retained_copies", ["device_key"])
    op.create_table(
        "placements",
        sa.Column("container_id", sa.String(length=36), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("placed_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("container_id", "generation"),
    )
    # Containers from before: their one known placement is where they are now.
    op.execute(
        "INSERT INTO placements (container_id, generation, device_key, placed_at)"
        " SELECT id, 1, device_key, created_at FROM containers"
    )


def downgrade() -> None:
    op.drop_table("placements")
    op.drop_index("ix_retained_copies_device_key", table_name="retained_copies")
    op.drop_table("retained_copies")
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_column("generation")
