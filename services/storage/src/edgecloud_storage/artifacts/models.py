from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import StorageBase


class Artifact(StorageBase):
    """A tenant's file. Its bytes live in a blob named by their SHA-256 once complete, so
    identical uploads (of any tenant) are stored once; each tenant's quota still counts
    its own artifacts in full."""

    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    """Declared by the uploader (checked on completion), or computed when it declared none."""
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    container_id: Mapped[str | None] = mapped_column(String(64))
    device_key: Mapped[str | None] = mapped_column(String(100))
    """The only device that may upload it, for artifacts a node produces."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Blob(StorageBase):
    """Stored bytes, shared by every complete artifact with the same SHA-256."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    refs: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TenantQuota(StorageBase):
    """The tenant's byte quota as last seen on a user's signed identity, for uploads that
    come from nodes (which carry no identity)."""

    __tablename__ = "tenant_quotas"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    storage_bytes: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
