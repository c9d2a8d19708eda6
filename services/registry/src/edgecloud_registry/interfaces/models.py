from datetime import datetime

from sqlalchemy import JSON, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import RegistryBase


class DeviceInterface(RegistryBase):
    """One interface of a node (edgecloud_contracts.interfaces) and the tenants it is for."""

    __tablename__ = "device_interfaces"

    device_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(String(210))
    container_path: Mapped[str | None] = mapped_column(String(210))
    topic: Mapped[str | None] = mapped_column(String(200))
    read_only: Mapped[bool] = mapped_column(Boolean)
    shareable: Mapped[bool] = mapped_column(Boolean)
    tenants: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(200))
    declared_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
