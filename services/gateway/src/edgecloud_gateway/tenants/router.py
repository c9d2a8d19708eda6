"""Public REST: invitations and members (tenant admins), tenants and quotas (operators)."""

from datetime import timedelta

from fastapi import APIRouter, Request, status

from edgecloud_servicekit.db import utcnow

from ..accounts.models import Tenant
from ..accounts.schemas import TenantOut, UserOut
from ..audit.trail import AuditDep, record_success
from ..deps import IdentityDep, OperatorDep, PathId, SessionDep, TenantAdminDep
from . import service
from .models import Invitation
from .schemas import (
    AcceptRequest,
    AcceptResponse,
    CreatedInvitation,
    InvitationList,
    InvitationOut,
    InvitationRequest,
    MemberList,
    MemberOut,
    QuotaChange,
    Quotas,
    RoleChange,
    TenantCreate,
    TenantDetail,
    TenantList,
)

router = APIRouter(prefix="/api/v1", tags=["tenants"])


def _invitation(row: Invitation, tenant: Tenant) -> InvitationOut:
    if row.revoked_at is not None:
        state = "revoked"
    elif row.used_at is not None:
        state = "used"
    elif row.expires_at <= utcnow():
        state = "expired"
    else:
        state = "pending"
    return InvitationOut(
        id=row.id,
        tenant=TenantOut(id=tenant.id, name=tenant.name),
        role=row.role,
        note=row.note,
        created_at=row.created_at,
        expires_at=row.expires_at,
        state=state,
    )


def _tenant(tenant: Tenant) -> TenantDetail:
    return TenantDetail(
        id=tenant.id,
        name=tenant.name,
        created_at=tenant.created_at,
        quotas=Quotas(
            containers=tenant.quota_containers,
            storage_bytes=tenant.quota_storage_bytes,
            api_requests_per_minute=tenant.quota_api_per_minute,
        ),
    )


@router.post("/invitations", status_code=status.HTTP_201_CREATED, response_model=CreatedInvitation)
async def create_invitation(
    body: InvitationRequest, admin: TenantAdminDep, session: SessionDep, trail: AuditDep
) -> CreatedInvitation:
    """A one-time token for a new member (tenant admins; operators for any tenant)."""
    entry = trail.begin("invitation.create", caller=admin)
    tenant = await service.tenant_for(session=session, caller=admin, tenant=body.tenant)
    invitation, token = await service.invite(
        session=session,
        caller=admin,
        tenant=tenant,
        role=body.role,
        ttl=timedelta(hours=body.ttl_hours),
        note=body.note,
    )
    entry.target = f"invitation:{invitation.id}"
    trail.note(tenant=tenant.id, role=body.role)
    record_success(session, trail)
    return CreatedInvitation(**_invitation(invitation, tenant).model_dump(), token=token)


@router.get("/invitations", response_model=InvitationList)
async def list_invitations(admin: TenantAdminDep, session: SessionDep) -> InvitationList:
    tenant = await service.tenant_for(session=session, caller=admin, tenant=None)
    rows = await service.list_invitations(session=session, caller=admin)
    return InvitationList(items=[_invitation(r, tenant) for r in rows])


@router.delete("/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invitation(
    invitation_id: PathId, admin: TenantAdminDep, session: SessionDep, trail: AuditDep
) -> None:
    trail.begin("invitation.revoke", target=f"invitation:{invitation_id}", caller=admin)
    await service.revoke_invitation(session=session, caller=admin, invitation_id=invitation_id)
    record_success(session, trail)


@router.post("/invitations/accept", response_model=AcceptResponse)
async def accept_invitation(
    body: AcceptRequest, identity: IdentityDep, session: SessionDep, trail: AuditDep
) -> AcceptResponse:
    """Join another tenant with an invitation; sign in with ``tenant`` to act in it."""
    entry = trail.begin("invitation.accept", target=f"user:{identity.username}", caller=identity)
    tenant, role = await service.accept(session=session, caller=identity, token=body.token)
    entry.tenant_id = tenant.id
    record_success(session, trail)
    return AcceptResponse(tenant=TenantOut(id=tenant.id, name=tenant.name), role=role)


@router.get("/members", response_model=MemberList)
async def list_members(admin: TenantAdminDep, session: SessionDep) -> MemberList:
    rows = await service.list_members(session=session, caller=admin)
    return MemberList(
        items=[
            MemberOut(
                user=UserOut(
                    id=u.id, username=u.username, created_at=u.created_at, disabled_at=u.disabled_at
                ),
                role=m.role,
                joined_at=m.created_at,
            )
            for u, m in rows
        ]
    )


@router.patch("/members/{user_id}", response_model=MemberOut)
async def change_role(
    user_id: PathId, body: RoleChange, admin: TenantAdminDep, session: SessionDep, trail: AuditDep
) -> MemberOut:
    trail.begin("member.update", target=f"user:{user_id}", caller=admin)
    user, membership = await service.change_role(
        session=session, caller=admin, user_id=user_id, role=body.role
    )
    trail.note(role=body.role)
    record_success(session, trail)
    return MemberOut(
        user=UserOut(id=user.id, username=user.username, created_at=user.created_at),
        role=membership.role,
        joined_at=membership.created_at,
    )


@router.delete("/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    user_id: PathId, admin: TenantAdminDep, session: SessionDep, trail: AuditDep
) -> None:
    """Remove a member from the tenant; their tokens for it stop working at once."""
    trail.begin("member.remove", target=f"user:{user_id}", caller=admin)
    await service.remove_member(session=session, caller=admin, user_id=user_id)
    record_success(session, trail)


@router.get("/tenants", response_model=TenantList)
async def list_tenants(operator: OperatorDep, session: SessionDep) -> TenantList:
    return TenantList(items=[_tenant(t) for t in await service.list_tenants(session=session)])


@router.post("/tenants", status_code=status.HTTP_201_CREATED, response_model=TenantDetail)
async def create_tenant(
    body: TenantCreate,
    request: Request,
    operator: OperatorDep,
    session: SessionDep,
    trail: AuditDep,
) -> TenantDetail:
    """A new, empty tenant (operators); invite its first admin next."""
    entry = trail.begin("tenant.create", target=f"tenant:{body.name}", caller=operator)
    tenant = await service.create_tenant(
        session=session, name=body.name, quotas=request.app.state.settings.default_quotas
    )
    entry.target = f"tenant:{tenant.id}"
    record_success(session, trail)
    return _tenant(tenant)


@router.get("/tenants/{tenant_id}", response_model=TenantDetail)
async def get_tenant(tenant_id: PathId, identity: IdentityDep, session: SessionDep) -> TenantDetail:
    """A tenant with its quotas: operators see any, others only their own."""
    return _tenant(await service.get_tenant(session=session, caller=identity, tenant_id=tenant_id))


@router.patch("/tenants/{tenant_id}/quotas", response_model=TenantDetail)
async def set_quotas(
    tenant_id: PathId,
    body: QuotaChange,
    operator: OperatorDep,
    session: SessionDep,
    trail: AuditDep,
) -> TenantDetail:
    trail.begin("tenant.quotas", target=f"tenant:{tenant_id}", caller=operator)
    tenant = await service.set_quotas(
        session=session,
        tenant_id=tenant_id,
        containers=body.containers,
        storage_bytes=body.storage_bytes,
        api_per_minute=body.api_requests_per_minute,
    )
    trail.note(**body.model_dump(exclude_none=True))
    record_success(session, trail)
    return _tenant(tenant)
