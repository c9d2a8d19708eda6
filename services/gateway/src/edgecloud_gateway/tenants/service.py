"""Tenants, their members, invitations and quotas."""

import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import OPERATOR, TENANT_ADMIN, Identity
from edgecloud_servicekit.problems import Forbidden
from edgecloud_servicekit.secret_tokens import hash_token, new_token

from ..accounts.exceptions import InvitationInvalid, TenantTaken
from ..accounts.models import Membership, Tenant, User
from ..accounts.service import TenantQuotas, new_tenant, redeem_invitation
from ..tokens import service as tokens_service
from .exceptions import (
    AlreadyMember,
    InvitationNotFound,
    LastAdmin,
    MemberNotFound,
    RoleNotAllowed,
    TenantNotFound,
)
from .models import Invitation

INVITATION_PREFIX = "eci_"
ADMIN_ROLES = frozenset({TENANT_ADMIN, OPERATOR})


def is_admin(caller: Identity) -> bool:
    """Tenant admins run their tenant; operators count as admins of their own."""
    return bool(caller.roles & ADMIN_ROLES)


def require_admin(caller: Identity) -> None:
    if not is_admin(caller):
        raise Forbidden("only tenant admins may do this", code="tenant_admin_only")


async def tenant_for(*, session: AsyncSession, caller: Identity, tenant: str | None) -> Tenant:
    """The tenant a request acts on: the caller's own, or (operators only) any named one."""
    if tenant is None or tenant == caller.tenant_id:
        row = await session.get(Tenant, caller.tenant_id)
    elif caller.is_operator:
        row = await session.scalar(
            select(Tenant).where((Tenant.id == tenant) | (Tenant.name == tenant))
        )
    else:
        row = None
    if row is None:
        raise TenantNotFound(tenant or caller.tenant_id)
    return row


# Invitations


async def invite(
    *, session: AsyncSession, caller: Identity, tenant: Tenant, role: str, ttl: timedelta, note: str
) -> tuple[Invitation, str]:
    """A one-time invitation token to join ``tenant`` with ``role``."""
    if tenant.id != caller.tenant_id and not caller.is_operator:
        raise TenantNotFound(tenant.id)
    require_admin(caller)
    if role == OPERATOR and not (caller.is_operator and tenant.id == caller.tenant_id):
        raise RoleNotAllowed(role)
    token = new_token(INVITATION_PREFIX)
    now = utcnow()
    invitation = Invitation(
        id=str(uuid.uuid4()),
        token_hash=hash_token(token),
        tenant_id=tenant.id,
        role=role,
        note=note,
        created_by=caller.user_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    await session.flush()
    return invitation, token


async def list_invitations(*, session: AsyncSession, caller: Identity) -> list[Invitation]:
    require_admin(caller)
    rows = await session.scalars(
        select(Invitation)
        .where(Invitation.tenant_id == caller.tenant_id)
        .order_by(Invitation.created_at.desc())
    )
    return list(rows.all())


async def revoke_invitation(*, session: AsyncSession, caller: Identity, invitation_id: str) -> None:
    require_admin(caller)
    invitation = await session.get(Invitation, invitation_id)
    if invitation is None or invitation.tenant_id != caller.tenant_id:
        raise InvitationNotFound(invitation_id)
    if invitation.revoked_at is None and invitation.used_at is None:
        invitation.revoked_at = utcnow()


async def accept(*, session: AsyncSession, caller: Identity, token: str) -> tuple[Tenant, str]:
    """An existing user joins the invitation's tenant."""
    invitation, tenant = await redeem_invitation(session=session, token=token)
    existing = await session.get(Membership, (caller.user_id, tenant.id))
    if existing is not None:
        raise AlreadyMember()
    invitation.used_by = caller.user_id
    session.add(
        Membership(
            user_id=caller.user_id, tenant_id=tenant.id, role=invitation.role, created_at=utcnow()
        )
    )
    try:
        await session.flush()
    except IntegrityError as err:
        raise InvitationInvalid() from err
    return tenant, invitation.role


# Members


async def list_members(*, session: AsyncSession, caller: Identity) -> list[tuple[User, Membership]]:
    require_admin(caller)
    rows = await session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == caller.tenant_id)
        .order_by(User.username)
    )
    return [(u, m) for u, m in rows]


async def _member(session: AsyncSession, caller: Identity, user_id: str) -> Membership:
    require_admin(caller)
    membership = await session.get(Membership, (user_id, caller.tenant_id))
    if membership is None:
        raise MemberNotFound(user_id)
    return membership


async def _admins_left_without(session: AsyncSession, tenant_id: str, user_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.tenant_id == tenant_id,
            Membership.role.in_(ADMIN_ROLES),
            Membership.user_id != user_id,
        )
    )
    return int(count or 0)


async def change_role(
    *, session: AsyncSession, caller: Identity, user_id: str, role: str
) -> tuple[User, Membership]:
    membership = await _member(session, caller, user_id)
    if role == OPERATOR and not caller.is_operator:
        raise RoleNotAllowed(role)
    demoting = membership.role in ADMIN_ROLES and role not in ADMIN_ROLES
    if demoting and await _admins_left_without(session, caller.tenant_id, user_id) == 0:
        raise LastAdmin()
    membership.role = role
    # Tokens carry no role (it is read per request), so the change applies at once.
    user = await session.get(User, user_id)
    assert user is not None  # the membership's foreign key
    return user, membership


async def remove_member(*, session: AsyncSession, caller: Identity, user_id: str) -> None:
    membership = await _member(session, caller, user_id)
    if (
        membership.role in ADMIN_ROLES
        and await _admins_left_without(session, caller.tenant_id, user_id) == 0
    ):
        raise LastAdmin()
    await session.delete(membership)
    await tokens_service.revoke_user_tokens(
        session=session, user_id=user_id, tenant_id=caller.tenant_id
    )


# Tenants and quotas (operators manage them; tenant admins read their own)


async def create_tenant(*, session: AsyncSession, name: str, quotas: TenantQuotas) -> Tenant:
    if await session.scalar(select(Tenant.id).where(Tenant.name == name)):
        raise TenantTaken(name)
    tenant = new_tenant(name, quotas)
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError as err:
        raise TenantTaken(name) from err
    return tenant


async def list_tenants(*, session: AsyncSession) -> list[Tenant]:
    return list((await session.scalars(select(Tenant).order_by(Tenant.name))).all())


async def get_tenant(*, session: AsyncSession, caller: Identity, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or (tenant.id != caller.tenant_id and not caller.is_operator):
        raise TenantNotFound(tenant_id)
    return tenant


async def set_quotas(
    *,
    session: AsyncSession,
    tenant_id: str,
    containers: int | None,
    storage_bytes: int | None,
    api_per_minute: int | None,
) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantNotFound(tenant_id)
    if containers is not None:
        tenant.quota_containers = containers
    if storage_bytes is not None:
        tenant.quota_storage_bytes = storage_bytes
    if api_per_minute is not None:
        tenant.quota_api_per_minute = api_per_minute
    return tenant
