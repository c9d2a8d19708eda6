from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import RegistryBase


class EnrolmentToken(RegistryBase):
    """A one-time token an operator hands to a new agent; only its hash is kept."""

    __tablename__ = "enrolment_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    device_key: Mapped[str | None] = mapped_column(String(100))


class DeviceCredential(RegistryBase):
    """A device's Ed25519 public key. The private key never leaves the node."""

    __tablename__ = "device_credentials"

    device_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    enrolment_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_auth_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RevokedDeviceKey(RegistryBase):
    """A device public key that was revoked: it never logs in or enrols again, under any
    device key, even after its device was re-admitted with a new key."""

    __tablename__ = "revoked_device_keys"

    public_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_key: Mapped[str] = mapped_column(String(100))
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)
