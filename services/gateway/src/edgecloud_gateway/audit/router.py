"""Public REST: the audit log (tenant admins: their tenant; operators: all of it)."""

from typing import Annotated

from fastapi import APIRouter, Query

from edgecloud_contracts.text import OBJECT_ID

from ..deps import SessionDep, TenantAdminDep
from . import service
from .models import AuditEvent
from .schemas import AuditEventOut, AuditPage

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


def _out(row: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=str(row.id),
        at=row.at,
        tenant=row.tenant_id,
        actor=row.actor_name,
        actor_id=row.actor_id,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        detail=row.detail,
        address=row.address,
    )


@router.get("", response_model=AuditPage)
async def list_audit(
    admin: TenantAdminDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
    action: Annotated[str | None, Query(max_length=64, pattern=OBJECT_ID)] = None,
    tenant: Annotated[
        str | None, Query(max_length=64, pattern=OBJECT_ID, description="operators only")
    ] = None,
) -> AuditPage:
    """Who did what, newest first."""
    rows, next_cursor = await service.list_events(
        session=session, caller=admin, tenant_id=tenant, action=action, limit=limit, cursor=cursor
    )
    return AuditPage(items=[_out(r) for r in rows], next_cursor=next_cursor)
