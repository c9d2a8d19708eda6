from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import OrchestratorBase

BigId = BigInteger().with_variant(Integer(), "sqlite")


class DataPoint(OrchestratorBase):
    __tablename__ = "data_points"
    __table_args__ = (Index("ix_data_points_container_name_at", "container_id", "name", "at"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    container_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    value: Mapped[float] = mapped_column(Float)
