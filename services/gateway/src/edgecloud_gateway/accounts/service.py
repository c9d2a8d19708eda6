"""Users, tenants, memberships and bearer tokens."""

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import OPERATOR, Identity

from . import passwords
from .exceptions import InvalidCredentials, TokenInvalid
from .models import AccessToken, Membership, Tenant, User

logger = logging.getLogger(__name__)
TOKEN_PREFIX = "ec_"
LOGIN = "login"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity
    token_id: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(token: str, *, secret: str) -> str:
    """The CSRF token bound to one session token (double submit, signed)."""
    return hmac.new(secret.encode(), f"csrf:{token}".encode(), hashlib.sha256).hexdigest()[:40]


async def ensure_bootstrap_operator(
    *, session: AsyncSession, username: str, password: str, tenant_name: str
) -> None:
    """Create the platform's first operator once; never overwrite an existing user."""
    if await session.scalar(select(User.id).where(User.username == username)):
        return
    now = utcnow()
    tenant = await session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(id=str(uuid.uuid4()), name=tenant_name, created_at=now)
        session.add(tenant)
    user = User(
        id=str(uuid.uuid4()),
        username=username,
        password_hash=await passwords.hash_password(password),
        created_at=now,
    )
    session.add(user)
    await session.flush()  # no ORM relationships: insert the parents first
    session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=OPERATOR, created_at=now))
    await session.flush()
    logger.info("created bootstrap operator %s", username)


async def login(
    *, session: AsyncSession, username: str, password: str, lifetime: timedelta
) -> tuple[IssuedToken, Identity]:
    user = await session.scalar(select(User).where(User.username == username))
    valid = await passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not valid or user.disabled_at is not None:
        raise InvalidCredentials()
    membership = await session.scalar(
        select(Membership).where(Membership.user_id == user.id).order_by(Membership.created_at)
    )
    if membership is None:
        raise InvalidCredentials()
    issued = await issue_token(
        session=session,
        user_id=user.id,
        tenant_id=membership.tenant_id,
        kind=LOGIN,
        lifetime=lifetime,
    )
    identity = Identity(
        user_id=user.id,
        username=user.username,
        tenant_id=membership.tenant_id,
        roles=frozenset({membership.role}),
    )
    return issued, identity


async def issue_token(
    *,
    session: AsyncSession,
    user_id: str,
    tenant_id: str,
    kind: str,
    lifetime: timedelta,
    name: str = "",
) -> IssuedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = AccessToken(
        id=str(uuid.uuid4()),
        token_hash=hash_token(token),
        user_id=user_id,
        tenant_id=tenant_id,
        kind=kind,
        name=name,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    await session.flush()
    return IssuedToken(id=row.id, token=token, expires_at=row.expires_at)


async def resolve_token(*, session: AsyncSession, token: str) -> Caller:
    """The caller behind a bearer token; raises :class:`TokenInvalid`."""
    if not token.startswith(TOKEN_PREFIX):
        raise TokenInvalid()
    row = (
        await session.execute(
            select(AccessToken, User, Membership)
            .join(User, User.id == AccessToken.user_id)
            .join(
                Membership,
                (Membership.user_id == AccessToken.user_id)
                & (Membership.tenant_id == AccessToken.tenant_id),
            )
            .where(AccessToken.token_hash == hash_token(token))
        )
    ).first()
    if row is None:
        raise TokenInvalid()
    access, user, membership = row
    if (
        access.revoked_at is not None
        or access.expires_at <= utcnow()
        or user.disabled_at is not None
    ):
        raise TokenInvalid()
    identity = Identity(
        user_id=user.id,
        username=user.username,
        tenant_id=access.tenant_id,
        roles=frozenset({membership.role}),
    )
    return Caller(identity=identity, token_id=access.id)


async def revoke_token(*, session: AsyncSession, token_id: str) -> None:
    await session.execute(
        update(AccessToken)
        .where(AccessToken.id == token_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def describe(*, session: AsyncSession, identity: Identity) -> tuple[User, Tenant]:
    user = await session.get(User, identity.user_id)
    tenant = await session.get(Tenant, identity.tenant_id)
    if user is None or tenant is None:
        raise TokenInvalid()
    return user, tenant


async def find_tenant(*, session: AsyncSession, name_or_id: str) -> Tenant | None:
    return await session.scalar(
        select(Tenant).where((Tenant.id == name_or_id) | (Tenant.name == name_or_id))
    )
