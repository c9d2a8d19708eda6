"""Deployments, and where a finished job's logs were shipped

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:01:59.972420
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
        "deployments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("container_id", sa.String(length=36), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("artifact_id", sa.String(length=64), nullable=False),
        sa.Column("script_id", sa.String(length=64), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("created_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deployments_container_created", ["container_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_deployments_tenant_id"), ["tenant_id"], unique=False)

    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("log_artifact_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_column("log_artifact_id")

    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployments_tenant_id"))
        batch_op.drop_index("ix_deployments_container_created")

    op.drop_table("deployments")
