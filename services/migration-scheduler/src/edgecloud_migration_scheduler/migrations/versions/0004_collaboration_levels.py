"""Collaboration levels: which level a migration used, a level-1 keeper, a level-0 relay

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("level", sa.Integer(), nullable=False, server_default="2"))
        batch.add_column(sa.Column("keeper", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("via", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("via")
        batch.drop_column("keeper")
        batch.drop_column("level")
