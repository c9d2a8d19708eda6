"""The per-tenant API rate quota: requests per minute, counted in the database so that
every gateway replica sees the same count (a fixed one-minute window)."""

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import commit_without_waiting_for_disk, transaction, upsert, utcnow
from edgecloud_servicekit.problems import TooManyRequests

from .models import ApiUsageWindow


async def count_request(
    *, sessions: async_sessionmaker[AsyncSession], tenant_id: str, limit: int
) -> None:
    """Count one request of the tenant; 429 once the minute's quota is used up."""
    now = utcnow()
    window = now.replace(second=0, microsecond=0)
    table = ApiUsageWindow.__table__
    async with transaction(sessions) as session:
        # A count lost in a crash is harmless; waiting for the disk on every request is not.
        await commit_without_waiting_for_disk(session)
        statement = upsert(
            session,
            table,  # type: ignore[arg-type]
            index_elements=["tenant_id", "window_start"],
            update={"requests": lambda excluded: table.c.requests + 1},
        ).returning(table.c.requests)
        used = (
            await session.execute(
                statement, {"tenant_id": tenant_id, "window_start": window, "requests": 1}
            )
        ).scalar_one()
    if used > limit:
        retry_after = max(1, int((window + timedelta(minutes=1) - now).total_seconds() + 0.999))
        raise TooManyRequests(
            f"the tenant's API quota of {limit} requests per minute is used up",
            retry_after=retry_after,
            code="rate_limited",
        )


async def prune(*, session: AsyncSession) -> None:
    cutoff = utcnow() - timedelta(minutes=10)
    await session.execute(delete(ApiUsageWindow).where(ApiUsageWindow.window_start < cutoff))
