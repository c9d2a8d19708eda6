from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime
from edgecloud_servicekit.leases import LeaseColumns

from ..database import MigrationSchedulerBase


class Migration(MigrationSchedulerBase):
    """One move of a container between nodes: why, where to, the plan that chose the
    target, each step's timing, and how it ended."""

    __tablename__ = "migrations"
    __table_args__ = (
        Index("ix_migrations_tenant_created", "tenant_id", "created_at"),
        Index("ix_migrations_container_created", "container_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    container_id: Mapped[str] = mapped_column(String(64))
    source_device: Mapped[str] = mapped_column(String(100))
    target_device: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """What the peer selection weighed (candidates, costs); the scheduler's own record."""
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    freeze_ms: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(2000))
    lost_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lost_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    level: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    """The collaboration level used: 2, run by the target; 1, kept by ``keeper`` first."""
    keeper: Mapped[str | None] = mapped_column(String(100))
    """Level 1: the device holding the container's package until it is handed on."""
    via: Mapped[str | None] = mapped_column(String(100))
    """Level 0: the peer that found the target and lent its broker to the move."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SchedulerLease(LeaseColumns, MigrationSchedulerBase):
    """Who among the replicas decides on lost nodes now (edgecloud_servicekit.leases)."""

    __tablename__ = "scheduler_leases"
