from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import OrchestratorBase


class RetainedCopy(OrchestratorBase):
    """An old copy of a container on a node that came back after the container had been
    placed elsewhere: stopped there, its ``/app`` and logs kept for the tenant until the
    tenant removes it or the node's retention time ends."""

    __tablename__ = "retained_copies"

    container_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_key: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    """fenced (stopped, kept), removing (the tenant asked), removed."""
    reason: Mapped[str] = mapped_column(String(500))
    found_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
