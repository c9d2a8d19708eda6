"""Host ports containers publish on their nodes, one container per port and node

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "published_ports",
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("host_port", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("container_id", sa.String(length=36), nullable=False),
        sa.Column(
            "reserved_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("device_key", "host_port", "protocol"),
    )
    with op.batch_alter_table("published_ports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_published_ports_container_id"), ["container_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("published_ports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_published_ports_container_id"))
    op.drop_table("published_ports")
