"""Users, tenants and memberships: registration, sign-in, who am I."""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import MEMBER, OPERATOR, TENANT_ADMIN, Identity
from edgecloud_servicekit.secret_tokens import hash_token

from ..audit.service import Entry
from ..tenants.models import Invitation
from ..tokens import service as tokens_service
from . import passwords, tenant_names, throttle
from .exceptions import (
    InvalidCredentials,
    InvitationInvalid,
    NotAMember,
    RegistrationClosed,
    TenantTaken,
    UsernameTaken,
)
from .models import Membership, Tenant, User

logger = logging.getLogger(__name__)
ROLES = (OPERATOR, TENANT_ADMIN, MEMBER)


@dataclass(frozen=True, slots=True)
class TenantQuotas:
    containers: int
    storage_bytes: int
    api_per_minute: int


@dataclass(frozen=True, slots=True)
class Registered:
    user: User
    tenant: Tenant
    role: str


def new_tenant(name: str, quotas: TenantQuotas) -> Tenant:
    return Tenant(
        id=str(uuid.uuid4()),
        name=tenant_names.check_name(name),
        created_at=utcnow(),
        quota_containers=quotas.containers,
        quota_storage_bytes=quotas.storage_bytes,
        quota_api_per_minute=quotas.api_per_minute,
    )


async def ensure_bootstrap_operator(
    *, session: AsyncSession, username: str, password: str, tenant_name: str, quotas: TenantQuotas
) -> None:
    """Create the platform's first operator once; never overwrite an existing user."""
    if await session.scalar(select(User.id).where(User.username == username)):
        return
    tenant = await session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = new_tenant(tenant_name, quotas)
        session.add(tenant)
    user = User(
        id=str(uuid.uuid4()),
        username=username,
        password_hash=await passwords.hash_password(password),
        created_at=utcnow(),
    )
    session.add(user)
    await session.flush()  # no ORM relationships: insert the parents first
    session.add(
        Membership(user_id=user.id, tenant_id=tenant.id, role=OPERATOR, created_at=utcnow())
    )
    await session.flush()
    logger.info("created bootstrap operator %s", username)


async def register(
    *,
    session: AsyncSession,
    username: str,
    password: str,
    tenant_name: str | None,
    invitation_token: str | None,
    open_registration: bool,
    quotas: TenantQuotas,
) -> Registered:
    """Create a user and, without an invitation, their own tenant; all or nothing."""
    passwords.check_strength(password, username=username)
    if await session.scalar(select(User.id).where(User.username == username)):
        raise UsernameTaken(username)

    if invitation_token:
        invitation, tenant = await redeem_invitation(session=session, token=invitation_token)
        if tenant_name is not None and tenant_name != tenant.name:
            raise InvitationInvalid()
        role = invitation.role
    else:
        if not open_registration:
            raise RegistrationClosed()
        name = tenant_name or username
        if await session.scalar(select(Tenant.id).where(Tenant.name == name)):
            raise TenantTaken(name)
        tenant = new_tenant(name, quotas)
        session.add(tenant)
        invitation, role = None, TENANT_ADMIN

    user = User(
        id=str(uuid.uuid4()),
        username=username,
        password_hash=await passwords.hash_password(password),
        created_at=utcnow(),
    )
    session.add(user)
    try:
        await session.flush()
        session.add(
            Membership(user_id=user.id, tenant_id=tenant.id, role=role, created_at=utcnow())
        )
        if invitation is not None:
            invitation.used_by = user.id
        await session.flush()
    except IntegrityError as err:  # a concurrent registration took the name first
        raise UsernameTaken(username) from err
    return Registered(user=user, tenant=tenant, role=role)


async def redeem_invitation(*, session: AsyncSession, token: str) -> tuple[Invitation, Tenant]:
    """Mark a valid invitation used (atomically: a token works once)."""
    now = utcnow()
    used = await session.execute(
        update(Invitation)
        .where(
            Invitation.token_hash == hash_token(token),
            Invitation.used_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(used_at=now)
        .returning(Invitation.id)
        .execution_options(synchronize_session=False)
    )
    invitation_id = used.scalar_one_or_none()
    if invitation_id is None:
        raise InvitationInvalid()
    invitation = await session.get(Invitation, invitation_id)
    assert invitation is not None
    tenant = await session.get(Tenant, invitation.tenant_id)
    if tenant is None:
        raise InvitationInvalid()
    return invitation, tenant


async def sign_in(
    *,
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    username: str,
    password: str,
    tenant_name: str | None,
    address: str,
    lifetime: timedelta,
    policies: dict[str, throttle.ThrottlePolicy],
    audit: Entry,
) -> tuple[tokens_service.IssuedToken, Identity]:
    """Check the password (unless this client has to wait: see :mod:`.throttle`) and issue
    a login token.

    The attempt is counted in a transaction of its own, committed before the password is
    checked, so parallel guesses cannot pass the budget; a right password is forgiven.
    """
    async with transaction(sessions) as counting:
        await throttle.admit(
            session=counting, username=username, address=address, policies=policies
        )
    user = await session.scalar(select(User).where(User.username == username))
    memberships = await _memberships(session, user.id) if user else []
    if user is not None:
        audit.actor_id, audit.actor_name = user.id, user.username
        audit.tenant_id = memberships[0][0].tenant_id if memberships else None
    valid = await passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not valid or user.disabled_at is not None or not memberships:
        raise InvalidCredentials()
    # The password checked must still be the account's, and the account enabled, as the
    # token is issued: a change, reset or disabling committed meanwhile (which revokes every
    # token) must not miss this one. The row stays locked until this request commits.
    still = await session.execute(
        update(User)
        .where(
            User.id == user.id,
            User.password_hash == user.password_hash,
            User.disabled_at.is_(None),
        )
        .values(password_hash=User.password_hash)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if still.scalar_one_or_none() is None:
        raise InvalidCredentials()
    await throttle.forgive(session=session, username=username, address=address)

    membership, tenant = memberships[0]
    if tenant_name is not None:
        chosen = [(m, t) for m, t in memberships if tenant_names.is_named(t, tenant_name)]
        if not chosen:
            raise NotAMember(tenant_name)
        membership, tenant = chosen[0]
    audit.tenant_id = tenant.id
    issued = await tokens_service.issue_token(
        session=session,
        user_id=user.id,
        tenant_id=tenant.id,
        kind=tokens_service.LOGIN,
        lifetime=lifetime,
    )
    identity = Identity(
        user_id=user.id,
        username=user.username,
        tenant_id=tenant.id,
        roles=frozenset({membership.role}),
    )
    return issued, identity


async def switch_tenant(
    *, session: AsyncSession, caller: Identity, token_id: str, tenant_name: str, lifetime: timedelta
) -> tokens_service.IssuedToken:
    """A new login token for another tenant the caller belongs to; the current one is revoked,
    so a session is in one tenant at a time."""
    memberships = await _memberships(session, caller.user_id)
    chosen = [t for _, t in memberships if tenant_names.is_named(t, tenant_name)]
    if not chosen:
        raise NotAMember(tenant_name)
    await tokens_service.revoke_token(session=session, token_id=token_id)
    return await tokens_service.issue_token(
        session=session,
        user_id=caller.user_id,
        tenant_id=chosen[0].id,
        kind=tokens_service.LOGIN,
        lifetime=lifetime,
    )


async def _memberships(session: AsyncSession, user_id: str) -> list[tuple[Membership, Tenant]]:
    rows = await session.execute(
        select(Membership, Tenant)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at)
    )
    return [(m, t) for m, t in rows]


async def describe(
    *, session: AsyncSession, identity: Identity
) -> tuple[User, Tenant, list[tuple[Membership, Tenant]]]:
    user = await session.get(User, identity.user_id)
    tenant = await session.get(Tenant, identity.tenant_id)
    if user is None or tenant is None:
        raise InvalidCredentials()
    return user, tenant, await _memberships(session, user.id)


async def find_tenant(*, session: AsyncSession, name_or_id: str) -> Tenant | None:
    return await session.scalar(select(Tenant).where(tenant_names.named(name_or_id)))
