"""Storing and reading the data points applications publish."""

from collections import defaultdict
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.containers import DataBatch, DataSeries
from edgecloud_servicekit.db import utcnow

from ..containers.models import Container
from .models import DataPoint

MAX_POINTS = 20_000
"""Points in one answer; a graph needs no more (ask for a shorter range)."""


async def store(*, session: AsyncSession, device_key: str, batches: list[DataBatch]) -> int:
    """Keep the points of the node's own containers; others' are dropped. Returns how many
    were kept."""
    ids = {batch.container_id for batch in batches}
    owners = dict(
        (
            await session.execute(
                select(Container.id, Container.tenant_id).where(
                    Container.id.in_(ids), Container.device_key == device_key
                )
            )
        ).all()
    )
    rows = [
        {
            "container_id": batch.container_id,
            "tenant_id": owners[batch.container_id],
            "name": point.name,
            "at": point.at,
            "value": point.value,
        }
        for batch in batches
        if batch.container_id in owners
        for point in batch.points
    ]
    if rows:
        await session.execute(insert(cast(Table, DataPoint.__table__)), rows)
    return len(rows)


async def series(
    *,
    session: AsyncSession,
    container_id: str,
    since: datetime | None,
    until: datetime | None,
    name: str | None,
) -> DataSeries:
    query = (
        select(DataPoint.name, DataPoint.at, DataPoint.value)
        .where(DataPoint.container_id == container_id)
        .order_by(DataPoint.at)
        .limit(MAX_POINTS + 1)
    )
    if since is not None:
        query = query.where(DataPoint.at >= since)
    if until is not None:
        query = query.where(DataPoint.at <= until)
    if name is not None:
        query = query.where(DataPoint.name == name)
    rows = (await session.execute(query)).all()
    found: defaultdict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for point_name, at, value in rows[:MAX_POINTS]:
        found[point_name].append((at, value))
    return DataSeries(series=dict(found), truncated=len(rows) > MAX_POINTS)


async def prune(*, session: AsyncSession, keep: timedelta) -> None:
    await session.execute(delete(DataPoint).where(DataPoint.at < utcnow() - keep))
