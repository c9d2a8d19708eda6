"""The request id of the user action behind each command

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 09:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: PostgreSQL adds it without rewriting the table, SQLite in place.
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_column("correlation_id")
