"""Migrations: what moved where and why, the plan, each timed step, how it ended

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:34:35.661459
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("source_device", sa.String(length=100), nullable=False),
        sa.Column("target_device", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("freeze_ms", sa.Float(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("lost_from", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lost_until", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("migrations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_migrations_container_created", ["container_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_migrations_tenant_created", ["tenant_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("migrations", schema=None) as batch_op:
        batch_op.drop_index("ix_migrations_tenant_created")
        batch_op.drop_index("ix_migrations_container_created")

    op.drop_table("migrations")
