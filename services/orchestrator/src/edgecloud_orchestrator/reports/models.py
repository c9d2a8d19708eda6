from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from edgecloud_servicekit.db import UTCDateTime

from ..database import OrchestratorBase


class ReceivedReport(OrchestratorBase):
    """A report a node sent with its id, recorded in the transaction that applied it."""

    __tablename__ = "received_reports"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_key: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
