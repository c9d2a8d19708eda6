"""Alert rules and the alerts they raise

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:38:00.568447
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import edgecloud_servicekit.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("docker_name", sa.String(length=128), nullable=True),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("op", sa.String(length=2), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("for_seconds", sa.Integer(), nullable=False),
        sa.Column("webhook", sa.String(length=2000), nullable=True),
        sa.Column("needs_grant", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "breaching_since", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("firing_alert_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_rules_device_key"), ["device_key"], unique=False)
        batch_op.create_index(
            "ix_alert_rules_tenant_created", ["tenant_id", "created_at"], unique=False
        )

    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("device_key", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("op", sa.String(length=2), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("raised_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cleared_message", sa.String(length=500), nullable=True),
        sa.Column("webhook_transition", sa.String(length=16), nullable=True),
        sa.Column("webhook_state", sa.String(length=16), nullable=True),
        sa.Column("webhook_attempts", sa.Integer(), nullable=False),
        sa.Column("webhook_error", sa.String(length=500), nullable=True),
        sa.Column("webhook_at", edgecloud_servicekit.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_rule_id"), ["rule_id"], unique=False)
        batch_op.create_index("ix_alerts_tenant_raised", ["tenant_id", "raised_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_tenant_raised")
        batch_op.drop_index(batch_op.f("ix_alerts_rule_id"))

    op.drop_table("alerts")
    with op.batch_alter_table("alert_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_rules_tenant_created")
        batch_op.drop_index(batch_op.f("ix_alert_rules_device_key"))

    op.drop_table("alert_rules")
