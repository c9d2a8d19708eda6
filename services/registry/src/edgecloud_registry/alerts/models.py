from datetime import datetime

from sqlalchemy import Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import RegistryBase


class AlertRule(RegistryBase):
    """A tenant's condition on a device or container, with where its evaluation stands."""

    __tablename__ = "alert_rules"
    __table_args__ = (Index("ix_alert_rules_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    target_kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(100))
    device_key: Mapped[str] = mapped_column(String(100), index=True)
    docker_name: Mapped[str | None] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(32))
    op: Mapped[str | None] = mapped_column(String(2))
    threshold: Mapped[float | None] = mapped_column(Float)
    for_seconds: Mapped[int] = mapped_column(Integer)
    webhook: Mapped[str | None] = mapped_column(String(2000))
    needs_grant: Mapped[bool] = mapped_column(Boolean)
    """A device rule of a tenant that sees the device through a grant (not as operator):
    it is evaluated only while the grant lasts."""
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    breaching_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    firing_alert_id: Mapped[str | None] = mapped_column(String(36))


class Alert(RegistryBase):
    """One firing of a rule, from raised to cleared; kept after the rule is deleted."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_tenant_raised", "tenant_id", "raised_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(36), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    target_kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(100))
    device_key: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(32))
    op: Mapped[str | None] = mapped_column(String(2))
    threshold: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(String(500))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cleared_message: Mapped[str | None] = mapped_column(String(500))
    # The latest webhook post (of the raise, then of the clear); all None without a webhook.
    webhook_transition: Mapped[str | None] = mapped_column(String(16))
    webhook_state: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_error: Mapped[str | None] = mapped_column(String(500))
    webhook_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
