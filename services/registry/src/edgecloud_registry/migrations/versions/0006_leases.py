"""Leases: which replica runs the jobs that must run once (liveness sweep, retention)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 02:20:00.000000
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
        "registry_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=120), nullable=False),
        sa.Column("expires_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("registry_leases")
