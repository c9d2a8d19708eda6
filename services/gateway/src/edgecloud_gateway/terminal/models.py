from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import GatewayBase


class ShellSession(GatewayBase):
    """One interactive shell: who opened it in which container, while it is open (the
    tenant's limit counts these) and how it ended. Any replica may serve any session, so
    this is the one count they share."""

    __tablename__ = "shell_sessions"
    __table_args__ = (Index("ix_shell_sessions_tenant_open", "tenant_id", "closed_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36))
    container_id: Mapped[str] = mapped_column(String(64))
    device_key: Mapped[str] = mapped_column(String(300))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    alive_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """Touched while the gateway serving it runs: a session whose gateway died stops
    counting once this is old."""
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    bytes_in: Mapped[int] = mapped_column(Integer, default=0)
    bytes_out: Mapped[int] = mapped_column(Integer, default=0)
