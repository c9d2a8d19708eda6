"""Bearer tokens: short-lived login tokens and named API tokens. Only SHA-256 hashes are
stored, and every request looks its token up, so expiry and revocation apply at once."""

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.pagination import newest_first
from edgecloud_servicekit.secret_tokens import hash_token, new_token

from ..accounts.models import Membership, Tenant, User
from .exceptions import TokenExpired, TokenInvalid, TokenNotFound
from .models import AccessToken

TOKEN_PREFIX = "ec_"
LOGIN = "login"
API = "api"
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, through which token."""

    identity: Identity
    token_id: str
    api_per_minute: int
    """The tenant's API rate quota."""
    token_kind: str = LOGIN
    """``login`` (a person's session) or ``api`` (a named token for scripts)."""


def csrf_token_for(token: str, *, secret: str) -> str:
    """The CSRF token bound to one session token (double submit, signed)."""
    return hmac.new(secret.encode(), f"csrf:{token}".encode(), hashlib.sha256).hexdigest()[:40]


async def issue_token(
    *,
    session: AsyncSession,
    user_id: str,
    tenant_id: str,
    kind: str,
    lifetime: timedelta,
    name: str = "",
    parent: AccessToken | None = None,
) -> IssuedToken:
    """A new token; one made with an API token (``parent``) ends no later than it and is
    revoked with it."""
    token = new_token(TOKEN_PREFIX)
    now = utcnow()
    expires_at = now + lifetime
    if parent is not None:
        expires_at = min(expires_at, parent.expires_at)
    row = AccessToken(
        id=str(uuid.uuid4()),
        token_hash=hash_token(token),
        user_id=user_id,
        tenant_id=tenant_id,
        kind=kind,
        name=name,
        created_at=now,
        expires_at=expires_at,
        parent_id=parent.id if parent is not None else None,
    )
    session.add(row)
    await session.flush()
    return IssuedToken(id=row.id, token=token, expires_at=row.expires_at)


# Plain columns rather than four ORM objects, and built once: this runs on every request.
_CALLER_BY_TOKEN = (
    select(
        AccessToken.id,
        AccessToken.kind,
        AccessToken.tenant_id,
        AccessToken.expires_at,
        AccessToken.revoked_at,
        AccessToken.last_used_at,
        User.id,
        User.username,
        User.disabled_at,
        Membership.role,
        Tenant.quota_containers,
        Tenant.quota_storage_bytes,
        Tenant.quota_api_per_minute,
    )
    .join(User, User.id == AccessToken.user_id)
    .join(
        Membership,
        (Membership.user_id == AccessToken.user_id)
        & (Membership.tenant_id == AccessToken.tenant_id),
    )
    .join(Tenant, Tenant.id == AccessToken.tenant_id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
)


async def resolve_token(*, session: AsyncSession, token: str) -> Caller:
    """The caller behind a bearer token; raises :class:`TokenInvalid` or :class:`TokenExpired`."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise TokenInvalid()
    row = (await session.execute(_CALLER_BY_TOKEN, {"token_hash": hash_token(token)})).first()
    if row is None:
        raise TokenInvalid()
    (
        token_id,
        token_kind,
        tenant_id,
        expires_at,
        revoked_at,
        last_used_at,
        user_id,
        username,
        disabled_at,
        role,
        quota_containers,
        quota_storage_bytes,
        quota_api_per_minute,
    ) = row
    now = utcnow()
    if revoked_at is not None or disabled_at is not None:
        raise TokenInvalid()
    if expires_at <= now:
        raise TokenExpired()
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        await session.execute(
            update(AccessToken).where(AccessToken.id == token_id).values(last_used_at=now)
        )
    identity = Identity(
        user_id=user_id,
        username=username,
        tenant_id=tenant_id,
        roles=frozenset({role}),
        quotas={"containers": quota_containers, "storage_bytes": quota_storage_bytes},
    )
    return Caller(
        identity=identity,
        token_id=token_id,
        api_per_minute=quota_api_per_minute,
        token_kind=token_kind,
    )


async def create_api_token(
    *, session: AsyncSession, caller: Caller, name: str, lifetime: timedelta
) -> IssuedToken:
    """A named API token acting as the caller in the caller's tenant.

    Made with a person's session it lives as long as asked. Made with an API token it can
    be no more than that token: it ends when its parent ends at the latest and is revoked
    with it (:func:`revoke_token`). A token carries no role or scope of its own (both are
    read from the membership on every request), so a child is never wider than its parent.
    """
    parent = None
    if caller.token_kind != LOGIN:
        parent = await session.get(AccessToken, caller.token_id)
        if parent is None or parent.revoked_at is not None:
            raise TokenInvalid()
    return await issue_token(
        session=session,
        user_id=caller.identity.user_id,
        tenant_id=caller.identity.tenant_id,
        kind=API,
        lifetime=lifetime,
        name=name,
        parent=parent,
    )


# The same rules as resolve_token's, for many tokens at once: a row missing means the
# token, its user or its membership is gone.
_VALID_TOKEN_ROLES = (
    select(AccessToken.id, Membership.role)
    .join(User, User.id == AccessToken.user_id)
    .join(
        Membership,
        (Membership.user_id == AccessToken.user_id)
        & (Membership.tenant_id == AccessToken.tenant_id),
    )
    .where(
        AccessToken.id.in_(bindparam("ids", expanding=True)),
        AccessToken.revoked_at.is_(None),
        AccessToken.expires_at > bindparam("now"),
        User.disabled_at.is_(None),
    )
)


async def roles_of_valid_tokens(*, session: AsyncSession, token_ids: set[str]) -> dict[str, str]:
    """Of ``token_ids``, those still valid (not revoked nor expired, their user enabled and
    still a member), each with its user's role in the token's tenant now."""
    rows = await session.execute(_VALID_TOKEN_ROLES, {"ids": sorted(token_ids), "now": utcnow()})
    return {token_id: role for token_id, role in rows}


async def revoke_token(*, session: AsyncSession, token_id: str) -> None:
    """Revoke a token and, transitively, every token made with it."""
    now = utcnow()
    generation = [token_id]
    while generation:
        await session.execute(
            update(AccessToken)
            .where(AccessToken.id.in_(generation), AccessToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        children = await session.scalars(
            select(AccessToken.id).where(AccessToken.parent_id.in_(generation))
        )
        generation = list(children.all())


async def revoke_all_user_tokens(*, session: AsyncSession, user_id: str) -> None:
    """End every session and API token a user holds, in every tenant."""
    await session.execute(
        update(AccessToken)
        .where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_user_tokens(*, session: AsyncSession, user_id: str, tenant_id: str) -> None:
    """End every session and API token a user holds in one tenant."""
    await session.execute(
        update(AccessToken)
        .where(
            AccessToken.user_id == user_id,
            AccessToken.tenant_id == tenant_id,
            AccessToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


async def list_api_tokens(
    *, session: AsyncSession, caller: Identity, limit: int, cursor: str | None
) -> tuple[list[AccessToken], str | None]:
    """The caller's own live API tokens, newest first."""
    query = select(AccessToken).where(
        AccessToken.user_id == caller.user_id,
        AccessToken.tenant_id == caller.tenant_id,
        AccessToken.kind == API,
        AccessToken.revoked_at.is_(None),
    )
    return await newest_first(
        session,
        query,
        at=AccessToken.created_at,
        id_=AccessToken.id,
        limit=limit,
        cursor=cursor,
        scope=f"tokens:{caller.tenant_id}:{caller.user_id}",
    )


async def get_api_token(*, session: AsyncSession, caller: Identity, token_id: str) -> AccessToken:
    """One of the caller's API tokens; anyone else's is 404."""
    row = await session.get(AccessToken, token_id)
    if (
        row is None
        or row.kind != API
        or row.user_id != caller.user_id
        or row.tenant_id != caller.tenant_id
        or row.revoked_at is not None
    ):
        raise TokenNotFound(token_id)
    return row
