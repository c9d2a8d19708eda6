"""shell sessions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 21:50:00.000000
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
        "shell_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("device_key", sa.String(length=300), nullable=False),
        sa.Column("opened_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("alive_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("bytes_in", sa.Integer(), nullable=False),
        sa.Column("bytes_out", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("shell_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_shell_sessions_tenant_open", ["tenant_id", "closed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("shell_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_shell_sessions_tenant_open")
    op.drop_table("shell_sessions")
