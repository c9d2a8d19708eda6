"""Devices as the registry shows them to the gateway (and the gateway to users)."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from .heartbeat import ContainerState, DeviceStatus, Link
from .text import Note, ObjectId


class DeviceMetricsNow(BaseModel):
    cpu_percent: float | None
    memory_used: int | None
    disk_free: int | None


class DeviceView(BaseModel):
    key: str
    id: str
    name: str
    mac: str
    location: str
    arch: str
    os: str
    kernel: str
    cpu_count: int
    memory_total: int
    disk_total: int
    status: DeviceStatus
    link: Link | None
    last_seen: datetime | None
    metrics: DeviceMetricsNow
    next_contact_at: datetime | None = None
    """For a node on a duty cycle: when it will next connect (commands queue until then)."""
    peer_url: str = ""
    collaboration_level: int = 2
    neighbours: dict[str, float] = {}
    """Round trips (ms) the node measured to its peers."""


class DeviceDetail(DeviceView):
    """One device, with the evidence behind its status."""

    agent_version: str
    runtime: str
    heartbeat_interval_s: float | None
    heartbeats: int
    first_seen: datetime
    status_changed_at: datetime
    status_reason: str
    load_1m: float | None
    containers: list[ContainerState]


class MetricPoint(BaseModel):
    at: datetime
    cpu_percent: float
    load_1m: float
    memory_used: int
    disk_free: int


class StatusChange(BaseModel):
    """One status transition: the device's history of status and link in use."""

    at: datetime
    status: DeviceStatus
    previous: DeviceStatus | None
    link: Link | None
    reason: str


class StatusHistory(BaseModel):
    device: str
    items: list[StatusChange]
    """Newest first."""


class DevicePage(BaseModel):
    items: list[DeviceView]
    next_cursor: str | None


class MetricSeries(BaseModel):
    device: str
    items: list[MetricPoint]
    next_cursor: str | None


class EnrolmentRequest(BaseModel):
    ttl_seconds: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] = 24 * 3600
    note: Note = ""


class Enrolment(BaseModel):
    id: str
    token: str
    expires_at: datetime


class GrantRequest(BaseModel):
    tenant: Annotated[ObjectId, Field(description="tenant name or id")]


class Grant(BaseModel):
    """A tenant allowed to see and use a device."""

    device: str
    tenant: str


class GrantList(BaseModel):
    items: list[Grant]
    next_cursor: str | None = None
