from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import StorageBase


class LogSegmentRow(StorageBase):
    """A run of a container's output lines as one node shipped them. A segment is keyed
    by where it starts on its node, so the same segment sent again is stored once."""

    __tablename__ = "log_segments"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id",
            "container_id",
            "device_key",
            "start_at",
            "start_skip",
            name="uq_log_segments_start",
        ),
        Index("ix_log_segments_container_start", "tenant_id", "container_id", "start_at"),
        Index("ix_log_segments_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    """From the node's grant, never from what the node says."""
    container_id: Mapped[str] = mapped_column(String(64))
    device_key: Mapped[str] = mapped_column(String(100))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    start_skip: Mapped[int] = mapped_column(Integer)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    line_count: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    """The lines as JSON: ``[[at, stream, text], ...]``."""
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
