"""Remembering which node reports were applied."""

from datetime import timedelta
from typing import cast

from sqlalchemy import Table, delete
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_servicekit.db import insert_new, utcnow

from .models import ReceivedReport

KEEP = timedelta(days=7)
"""Far longer than a node's outbox holds a report it keeps re-sending."""


async def first_receipt(*, session: AsyncSession, report_id: str, device_key: str) -> bool:
    """Record ``report_id`` in the session's transaction; False if it was recorded already
    (a concurrent first receipt makes this wait for its transaction to end)."""
    statement = insert_new(
        session, cast(Table, ReceivedReport.__table__), index_elements=["id"]
    ).values(id=report_id, device_key=device_key, at=utcnow())
    recorded = await session.scalar(statement.returning(ReceivedReport.id))
    return recorded is not None


async def prune(*, session: AsyncSession, keep: timedelta = KEEP) -> None:
    await session.execute(delete(ReceivedReport).where(ReceivedReport.at < utcnow() - keep))
