"""revoked device keys, remembered for good

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_device_keys",
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("revoked_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("public_key"),
    )
    # Credentials revoked before this revision.
    op.execute(
        "INSERT INTO revoked_device_keys (public_key, device_key, revoked_at)"
        " SELECT public_key, device_key, revoked_at FROM device_credentials"
        " WHERE revoked_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("revoked_device_keys")
