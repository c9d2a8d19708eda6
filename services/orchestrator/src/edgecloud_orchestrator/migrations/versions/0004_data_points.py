"""Collected data points, per container

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 11:32:33.110986
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_points",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("container_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("data_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_points_at"), ["at"], unique=False)
        batch_op.create_index(
            "ix_data_points_container_name_at", ["container_id", "name", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("data_points", schema=None) as batch_op:
        batch_op.drop_index("ix_data_points_container_name_at")
        batch_op.drop_index(batch_op.f("ix_data_points_at"))

    op.drop_table("data_points")
