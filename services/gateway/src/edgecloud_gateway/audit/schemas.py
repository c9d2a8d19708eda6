from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEventOut(BaseModel):
    id: str
    at: datetime
    tenant: str | None
    actor: str
    actor_id: str | None
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    address: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None
