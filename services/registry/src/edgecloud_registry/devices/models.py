from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime
from edgecloud_servicekit.leases import LeaseColumns

from ..database import RegistryBase

# SQLite auto-increments only INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Device(RegistryBase):
    """A node as its heartbeats describe it, with its liveness."""

    __tablename__ = "devices"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    id: Mapped[str] = mapped_column(String(300))
    name: Mapped[str] = mapped_column(String(200))
    mac: Mapped[str] = mapped_column(String(17))
    location: Mapped[str] = mapped_column(String(200), default="")
    arch: Mapped[str] = mapped_column(String(40))
    os: Mapped[str] = mapped_column(String(200))
    kernel: Mapped[str] = mapped_column(String(200))
    cpu_count: Mapped[int] = mapped_column(Integer)
    memory_total: Mapped[int] = mapped_column(BigInteger)
    disk_total: Mapped[int] = mapped_column(BigInteger)
    agent_version: Mapped[str] = mapped_column(String(40), default="")
    peer_url: Mapped[str] = mapped_column(String(300), default="")
    peer_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    collaboration_level: Mapped[int] = mapped_column(Integer, default=2)
    neighbours: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """What the node's operator allows tenant containers (a NodePolicy); None from agents
    that predate it. A compact beat carries none: the last full heartbeat's stays."""

    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str] = mapped_column(String(200), default="")
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    link: Mapped[str | None] = mapped_column(String(16))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the device counts as overdue: last heartbeat + missed * its interval.
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    heartbeat_interval_s: Mapped[float | None] = mapped_column(Float)
    heartbeats: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    wamp_session: Mapped[int | None] = mapped_column(BigInteger, index=True)
    next_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """A duty-cycled node: when it said it will connect again."""

    cpu_percent: Mapped[float | None] = mapped_column(Float)
    load_1m: Mapped[float | None] = mapped_column(Float)
    memory_used: Mapped[int | None] = mapped_column(BigInteger)
    disk_free: Mapped[int | None] = mapped_column(BigInteger)
    runtime: Mapped[str] = mapped_column(String(16), default="docker")
    containers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class DeviceMetric(RegistryBase):
    """History of a device's load, for graphs; old rows are deleted by retention."""

    __tablename__ = "device_metrics"
    __table_args__ = (Index("ix_device_metrics_device_at", "device_key", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_key: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    cpu_percent: Mapped[float] = mapped_column(Float)
    load_1m: Mapped[float] = mapped_column(Float)
    memory_used: Mapped[int] = mapped_column(BigInteger)
    disk_free: Mapped[int] = mapped_column(BigInteger)


class DeviceStatusChange(RegistryBase):
    """Every status transition, the durable history behind the status events."""

    __tablename__ = "device_status_changes"
    __table_args__ = (Index("ix_device_status_changes_device_at", "device_key", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    device_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    previous: Mapped[str | None] = mapped_column(String(16))
    link: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DeviceGrant(RegistryBase):
    """A tenant allowed to see and use a device (operators see every device)."""

    __tablename__ = "device_grants"

    device_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    granted_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryLease(LeaseColumns, RegistryBase):
    """Which replica runs the liveness sweep and history retention now
    (edgecloud_servicekit.leases)."""

    __tablename__ = "registry_leases"
