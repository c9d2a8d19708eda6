"""The per-tenant API rate quota: requests per minute (a fixed one-minute window).

Each replica counts in memory and adds its counts to the database every second, reading
back what all replicas counted. A request therefore never waits for a database write,
and replicas agree on a tenant's use within about a second.
"""

import asyncio
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_servicekit.db import commit_without_waiting_for_disk, transaction, upsert, utcnow
from edgecloud_servicekit.problems import TooManyRequests

from .models import ApiUsageWindow

logger = logging.getLogger(__name__)


def window_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class RateLimiter:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], flush_every_s: float = 1.0
    ) -> None:
        self._sessions = sessions
        self._flush_every = flush_every_s
        self._window = window_of(utcnow())
        self._unflushed: defaultdict[str, int] = defaultdict(int)
        self._shared: dict[str, int] = {}
        """What every replica had counted in this window, as of the last flush."""

    def count(self, *, tenant_id: str, limit: int) -> None:
        """Count one request of the tenant; 429 once the minute's quota is used up."""
        now = utcnow()
        if window_of(now) != self._window:
            self._window, self._shared = window_of(now), {}
            self._unflushed.clear()
        self._unflushed[tenant_id] += 1
        used = self._shared.get(tenant_id, 0) + self._unflushed[tenant_id]
        if used > limit:
            retry_after = max(
                1, int((self._window + timedelta(minutes=1) - now).total_seconds() + 0.999)
            )
            raise TooManyRequests(
                f"the tenant's API quota of {limit} requests per minute is used up",
                retry_after=retry_after,
                code="rate_limited",
            )

    async def flush(self) -> None:
        """Add this replica's counts to the shared ones and read back everyone's."""
        window, counts = self._window, dict(self._unflushed)
        self._unflushed.clear()
        table = cast(Table, ApiUsageWindow.__table__)
        async with transaction(self._sessions) as session:
            # A count lost in a crash is harmless; it is not worth waiting for the disk.
            await commit_without_waiting_for_disk(session)
            if counts:
                statement = upsert(
                    session,
                    table,
                    index_elements=["tenant_id", "window_start"],
                    update={"requests": lambda excluded: table.c.requests + excluded.requests},
                )
                await session.execute(
                    statement,
                    [
                        {"tenant_id": t, "window_start": window, "requests": n}
                        for t, n in counts.items()
                    ],
                )
            rows = await session.execute(
                select(ApiUsageWindow.tenant_id, ApiUsageWindow.requests).where(
                    ApiUsageWindow.window_start == window
                )
            )
            shared = {tenant: requests for tenant, requests in rows}
        if window == self._window:
            self._shared = shared

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            try:
                await self.flush()
            except Exception as err:  # counts stay local until the database is back
                logger.warning("flushing API usage failed: %s", err)


async def prune(*, session: AsyncSession) -> None:
    cutoff = utcnow() - timedelta(minutes=10)
    await session.execute(delete(ApiUsageWindow).where(ApiUsageWindow.window_start < cutoff))
