from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import OrchestratorBase


class Container(OrchestratorBase):
    """A tenant container: what was asked for (spec, desired state) and what the node
    last said about it (state)."""

    __tablename__ = "containers"
    __table_args__ = (
        Index("ix_containers_tenant_created", "tenant_id", "created_at"),
        Index("ix_containers_device_name", "device_key", "docker_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    docker_name: Mapped[str] = mapped_column(String(128))
    device_key: Mapped[str] = mapped_column(String(100), index=True)
    image: Mapped[str] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(71))
    """The image it was created from, as the first node to report it said; a peer
    migration's target takes no other (a later report does not change it)."""
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    desired_state: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32))
    docker_id: Mapped[str | None] = mapped_column(String(64))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    log_artifact_id: Mapped[str | None] = mapped_column(String(64))
    """A finished job's logs, shipped to the storage before its node removed it."""
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """Its placement, counted up each time it is placed on another node (also in the
    spec): only reports of this placement, from ``device_key``, are taken."""


class PlacementRecord(OrchestratorBase):
    """Where each placement of a container was made: a returning node is told about, and
    the tenant told of, only the old copies the cloud itself placed on that node."""

    __tablename__ = "placements"

    container_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_key: Mapped[str] = mapped_column(String(100))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InterfaceClaim(OrchestratorBase):
    """A container holding one of its node's interfaces. It holds it while it is wanted
    running and not removed; ``exclusive`` unless the interface is shareable."""

    __tablename__ = "interface_claims"
    __table_args__ = (Index("ix_interface_claims_device_interface", "device_key", "interface"),)

    container_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    interface: Mapped[str] = mapped_column(String(63), primary_key=True)
    device_key: Mapped[str] = mapped_column(String(100))
    exclusive: Mapped[bool] = mapped_column(Boolean)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InterfaceLock(OrchestratorBase):
    """One row per interface ever claimed: claims of the same interface take it in turn
    (an update of this row), so two containers never both get an exclusive one."""

    __tablename__ = "interface_locks"

    device_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    interface: Mapped[str] = mapped_column(String(63), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PublishedPort(OrchestratorBase):
    """A host port a container publishes on its node. The key is the port on the node:
    two containers (of any tenants) never both hold one, the database sees to it. A row
    holds only while its container lives on that device (.ports)."""

    __tablename__ = "published_ports"

    device_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    host_port: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(3), primary_key=True)
    container_id: Mapped[str] = mapped_column(String(36), index=True)
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime)
