"""Devices as the registry shows them to the gateway (and the gateway to users)."""

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .containers import PortMapping
from .heartbeat import ContainerState, DeviceStatus, Link, NodePolicy
from .identity import KEY_PATTERN
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
    """Where peers reach the node's broker: the node's plumbing, shown to operators only
    (empty for a tenant)."""
    peer_urls: list[str] = []
    """The same over each of the node's links in order (WAN, then mesh); operators only."""
    collaboration_level: int = 2
    neighbours: dict[str, float] = {}
    """Round trips (ms) the node measured to its peers; a tenant is shown only those to
    devices granted to it."""
    policy: NodePolicy | None = None
    """What the node's operator allows tenant containers (its PIDs, the range host ports
    are published from); null from an agent that predates it, which then gets the
    cloud's defaults: no published ports."""


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
    """What the node's engine runs; a tenant is shown only its own containers."""


PortRefusal = Literal["ports_not_allowed", "port_out_of_range", "port_taken"]
"""Why a node cannot publish a container's ports, as the problem code that says so."""
HostPort = tuple[int, str]
"""A port published on a node, and its protocol (``tcp`` or ``udp``)."""


def port_refusal(
    policy: NodePolicy | None, ports: Iterable[HostPort], taken: Collection[HostPort] = ()
) -> tuple[PortRefusal, HostPort] | None:
    """Why the host ``ports`` cannot be published on a node with ``policy`` where ``taken``
    are in use already, with the first port refused; None when they can. A node without a
    policy (an older agent) or without a range publishes none."""
    for port in ports:
        if policy is None or policy.ports is None:
            return "ports_not_allowed", port
        low, high = policy.ports
        if not low <= port[0] <= high:
            return "port_out_of_range", port
        if port in taken:
            return "port_taken", port
    return None


def host_ports(ports: Iterable[PortMapping]) -> list[HostPort]:
    """The host side of a container's published ports."""
    return [(port.host, port.protocol) for port in ports]


class PublishedPort(BaseModel):
    """A host port a live container publishes on its node (operators only: the
    migration-scheduler places moving containers where their ports are free)."""

    device: str
    host: int
    protocol: Literal["tcp", "udp"]
    container: str


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
    device: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None
    """The token is for this device key only; a revoked device comes back (with a new key
    and no grants) only with a token made for it."""


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


OnWithdrawal = Literal["stop", "keep"]
"""What becomes of a tenant's containers on a device whose grant is withdrawn: ``stop``
them (queued if the node is offline), or ``keep`` them running until the tenant removes
them. Either way the tenant can no longer act on them there, and their sensor feeds end."""


class GrantWithdrawal(BaseModel):
    """The orchestrator's part of a withdrawal, once the registry has dropped the grant."""

    tenant: ObjectId
    containers: OnWithdrawal = "keep"


class WithdrawalOutcome(BaseModel):
    device: str
    tenant: str
    containers: OnWithdrawal
    stopped: list[str]
    """Containers a stop was queued for."""
    unsubscribed: list[str]
    """Containers whose sensor feed was cut."""
    cancelled: list[str]
    """Commands of the tenant's that were waiting for the node, never sent."""
