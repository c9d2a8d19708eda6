"""Looking after accounts: a user changes their password; a tenant admin (for the members of
their tenant) or an operator (for anyone) resets a password, disables or enables an
account. Each of these ends every session and API token the user holds, in every tenant;
live connections are checked against the database again and end with them.

Who may act on whom (:func:`managed_user`): an operator on any user; a tenant admin on a
user whose only tenant is the admin's own and who is no operator (a user in other tenants
too, or an operator, answers 403 ``user_not_managed``; a user outside the tenant 404, as
any other tenant's object); nobody on themselves through these routes (409
``not_on_yourself``: a user changes their own password with the current one).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import OPERATOR, Identity
from edgecloud_servicekit.secret_tokens import hash_token, new_token

from ..tenants.service import require_admin
from ..tokens import service as tokens_service
from . import passwords, throttle
from .exceptions import (
    NotOnYourself,
    ResetInvalid,
    UserNotFound,
    UserNotManaged,
    WeakPassword,
    WrongPassword,
)
from .models import Membership, PasswordReset, User

RESET_PREFIX = "ecr_"
AWAITING_RESET = "!awaiting-reset"
"""A password hash no password matches: the user's old password stops working at once."""


@dataclass(frozen=True, slots=True)
class IssuedReset:
    token: str
    expires_at: datetime


async def change_password(
    *,
    session: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    caller: Identity,
    current: str,
    new: str,
    address: str,
    policies: dict[str, throttle.ThrottlePolicy],
) -> User:
    """Set the caller's new password, given the current one (guesses at it are throttled
    as sign-ins are), and end all their sessions and tokens."""
    passwords.check_strength(new, username=caller.username)
    async with transaction(sessions) as counting:
        await throttle.admit(
            session=counting, username=caller.username, address=address, policies=policies
        )
    user = await session.get(User, caller.user_id)
    if user is None or not await passwords.verify_password(user.password_hash, current):
        raise WrongPassword()
    # Forgiven for good, whatever this request's own transaction does next.
    async with transaction(sessions) as forgiving:
        await throttle.forgive(session=forgiving, username=user.username, address=address)
    if new == current:
        raise WeakPassword(["use another password than the current one"])
    user.password_hash = await passwords.hash_password(new)
    await tokens_service.revoke_all_user_tokens(session=session, user_id=user.id)
    return user


async def managed_user(*, session: AsyncSession, caller: Identity, user_id: str) -> User:
    """The user ``caller`` may reset, disable or enable (see the module's docstring)."""
    require_admin(caller)
    if user_id == caller.user_id:
        raise NotOnYourself()
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound(user_id)
    if caller.is_operator:
        return user
    memberships = list(
        (await session.scalars(select(Membership).where(Membership.user_id == user_id))).all()
    )
    if all(m.tenant_id != caller.tenant_id for m in memberships):
        raise UserNotFound(user_id)
    if any(m.role == OPERATOR for m in memberships):
        raise UserNotManaged("the user is an operator")
    if any(m.tenant_id != caller.tenant_id for m in memberships):
        raise UserNotManaged("the user belongs to other tenants too")
    return user


async def reset_password(
    *,
    session: AsyncSession,
    caller: Identity,
    user_id: str,
    password: str | None,
    ttl: timedelta,
) -> tuple[User, IssuedReset | None]:
    """Set a user's new password, or (without one) issue a one-time reset token and make
    the old password stop working; either way end the user's sessions and tokens."""
    user = await managed_user(session=session, caller=caller, user_id=user_id)
    now = utcnow()
    # A reset issued before is superseded by this one.
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    issued = None
    if password is not None:
        passwords.check_strength(password, username=user.username)
        user.password_hash = await passwords.hash_password(password)
    else:
        token = new_token(RESET_PREFIX)
        issued = IssuedReset(token=token, expires_at=now + ttl)
        session.add(
            PasswordReset(
                id=str(uuid.uuid4()),
                token_hash=hash_token(token),
                user_id=user.id,
                created_by=caller.user_id,
                created_at=now,
                expires_at=issued.expires_at,
            )
        )
        user.password_hash = AWAITING_RESET
    await tokens_service.revoke_all_user_tokens(session=session, user_id=user.id)
    return user, issued


async def redeem_reset(*, session: AsyncSession, token: str, password: str) -> User:
    """Set the password a one-time reset token was issued for (once)."""
    now = utcnow()
    reset = await session.scalar(
        select(PasswordReset).where(
            PasswordReset.token_hash == hash_token(token),
            PasswordReset.used_at.is_(None),
            PasswordReset.expires_at > now,
        )
    )
    user = await session.get(User, reset.user_id) if reset is not None else None
    if reset is None or user is None:
        raise ResetInvalid()
    passwords.check_strength(password, username=user.username)
    consumed = await session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
        .returning(PasswordReset.id)
        .execution_options(synchronize_session=False)
    )
    if consumed.scalar_one_or_none() is None:  # a concurrent use won
        raise ResetInvalid()
    user.password_hash = await passwords.hash_password(password)
    await tokens_service.revoke_all_user_tokens(session=session, user_id=user.id)
    return user


async def home_tenant_id(*, session: AsyncSession, user_id: str) -> str | None:
    """The tenant a user joined first: where what they do alone (a reset) is audited."""
    return await session.scalar(
        select(Membership.tenant_id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at)
        .limit(1)
    )


async def set_disabled(
    *, session: AsyncSession, caller: Identity, user_id: str, disabled: bool
) -> User:
    """Disable an account (it cannot sign in, and its sessions and tokens end) or enable
    it again (its old tokens stay revoked)."""
    user = await managed_user(session=session, caller=caller, user_id=user_id)
    if disabled:
        if user.disabled_at is None:
            user.disabled_at = utcnow()
        await tokens_service.revoke_all_user_tokens(session=session, user_id=user.id)
    else:
        user.disabled_at = None
    return user
