from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import OrchestratorBase

BigId = BigInteger().with_variant(Integer(), "sqlite")


class CommandRow(OrchestratorBase):
    """The outbox: a command is stored before it is sent, and keeps its whole story."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_device_state_seq", "device_key", "state", "seq"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    container_id: Mapped[str] = mapped_column(String(36), index=True)
    device_key: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(500))
    error_code: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    """The request id of the user action that made the command: every delivery, a late
    one by the background loop too, carries it to the node."""
