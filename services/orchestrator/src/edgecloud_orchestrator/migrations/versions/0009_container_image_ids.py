"""The image each container was created from, as its first node reported it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("image_id", sa.String(length=71), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("containers", schema=None) as batch_op:
        batch_op.drop_column("image_id")
