"""Baseline of the storage's schema: its version table and nothing else yet.

Its tables and API arrive with the applications issue (#5).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to create: 0002 adds the storage's tables."""


def downgrade() -> None:
    """Nothing to drop."""
