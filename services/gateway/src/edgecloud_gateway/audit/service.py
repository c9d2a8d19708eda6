"""The audit log: every state-changing action, who did it, to what, and how it ended."""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.pagination import decode_cursor, encode_cursor
from edgecloud_servicekit.problems import BadRequest

from .models import AuditEvent

SUCCESS = "success"
FAILURE = "failure"


@dataclass(slots=True)
class Entry:
    """One action being audited; filled in as the request learns more."""

    action: str
    target: str = ""
    tenant_id: str | None = None
    actor_id: str | None = None
    actor_name: str = ""
    address: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def record(session: AsyncSession, entry: Entry, *, outcome: str) -> None:
    session.add(
        AuditEvent(
            at=utcnow(),
            tenant_id=entry.tenant_id,
            actor_id=entry.actor_id,
            actor_name=entry.actor_name,
            action=entry.action,
            target=entry.target,
            outcome=outcome,
            detail=entry.detail,
            address=entry.address,
        )
    )


async def list_events(
    *,
    session: AsyncSession,
    caller: Identity,
    tenant_id: str | None,
    action: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AuditEvent], str | None]:
    """Newest first. Operators may read every tenant's events; others only their own."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if not caller.is_operator:
        query = query.where(AuditEvent.tenant_id == caller.tenant_id)
    elif tenant_id:
        query = query.where(AuditEvent.tenant_id == tenant_id)
    if action:
        query = query.where(AuditEvent.action == action)
    if cursor:
        try:
            before = int(decode_cursor(cursor, scope=_audit_scope(caller)))
        except ValueError as err:
            raise BadRequest("cursor is not valid", code="invalid_cursor") from err
        query = query.where(AuditEvent.id < before)
    rows = list((await session.scalars(query)).all())
    next_cursor = (
        encode_cursor(str(rows[limit - 1].id), scope=_audit_scope(caller))
        if len(rows) > limit
        else None
    )
    return rows[:limit], next_cursor


def _audit_scope(caller: Identity) -> str:
    return f"audit:{caller.tenant_id}"
