"""Hardware interfaces and sensor streams of nodes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 22:25:00.000000
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
        "device_interfaces",
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=210), nullable=True),
        sa.Column("container_path", sa.String(length=210), nullable=True),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("shareable", sa.Boolean(), nullable=False),
        sa.Column("tenants", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("declared_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_key", "name"),
    )


def downgrade() -> None:
    op.drop_table("device_interfaces")
