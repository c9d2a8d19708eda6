"""Shell sessions in the database: the tenant's limit, liveness, and how each ended.

Admission is by rank, so that replicas serving the same tenant never let more than the
limit in: a new session is written first, then counted among the tenant's open sessions
in the order they were opened; one ranked beyond the limit is closed at once and refused.
Two sessions opened at the same moment cannot both see themselves within the limit.
"""

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import TooManyRequests

from .bridge import ShellOutcome
from .models import ShellSession

REFUSED = "refused"


async def admit(
    sessions: async_sessionmaker[AsyncSession],
    *,
    caller: Identity,
    container_id: str,
    device_key: str,
    limit: int,
    stale_after: timedelta,
) -> ShellSession:
    """A new open session of the caller's tenant, or :class:`TooManyRequests`."""
    now = utcnow()
    row = ShellSession(
        id=uuid.uuid4().hex,
        tenant_id=caller.tenant_id,
        user_id=caller.user_id,
        container_id=container_id,
        device_key=device_key,
        opened_at=now,
        alive_at=now,
        bytes_in=0,
        bytes_out=0,
    )
    async with transaction(sessions) as session:
        session.add(row)
    async with transaction(sessions) as session:
        open_ids = (
            await session.scalars(
                select(ShellSession.id)
                .where(
                    ShellSession.tenant_id == caller.tenant_id,
                    ShellSession.closed_at.is_(None),
                    ShellSession.alive_at > now - stale_after,
                )
                .order_by(ShellSession.opened_at, ShellSession.id)
                .limit(limit)
            )
        ).all()
    if row.id not in open_ids:
        async with transaction(sessions) as session:
            refused = await session.get(ShellSession, row.id)
            if refused is not None:
                refused.closed_at, refused.end_reason = utcnow(), REFUSED
        raise TooManyRequests(
            f"your tenant has {limit} shells open already: close one first",
            retry_after=5,
            code="too_many_shells",
        )
    return row


async def touch(sessions: async_sessionmaker[AsyncSession], session_id: str) -> None:
    async with transaction(sessions) as session:
        row = await session.get(ShellSession, session_id)
        if row is not None:
            row.alive_at = utcnow()


async def finish(
    sessions: async_sessionmaker[AsyncSession], session_id: str, outcome: ShellOutcome
) -> ShellSession | None:
    async with transaction(sessions) as session:
        row = await session.get(ShellSession, session_id)
        if row is not None:
            row.closed_at = utcnow()
            row.end_reason = outcome.reason
            row.exit_code = outcome.exit_code
            row.bytes_in, row.bytes_out = outcome.bytes_in, outcome.bytes_out
        return row
