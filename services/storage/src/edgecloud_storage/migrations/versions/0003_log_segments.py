"""Containers' log segments, shipped by their nodes while they run

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 20:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_segments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("start_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("start_skip", sa.Integer(), nullable=False),
        sa.Column("end_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "received_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "tenant_id",
            "container_id",
            "device_key",
            "start_at",
            "start_skip",
            name="uq_log_segments_start",
        ),
    )
    with op.batch_alter_table("log_segments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_log_segments_container_start",
            ["tenant_id", "container_id", "start_at"],
            unique=False,
        )
        batch_op.create_index("ix_log_segments_received", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("log_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_log_segments_received")
        batch_op.drop_index("ix_log_segments_container_start")
    op.drop_table("log_segments")
