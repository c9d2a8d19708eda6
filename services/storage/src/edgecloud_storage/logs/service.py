"""Containers' log segments: stored once each, read back in time order, swept away after
the operator's retention. Every query is scoped by the tenant."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.log_segments import LogSegment, StoredLine

from .models import LogSegmentRow

READ_PAGE = 50
"""Segments fetched at a time while gathering a tail."""


def _encoded(segment: LogSegment) -> str:
    return json.dumps(
        [[line.at.isoformat(), line.stream, line.text] for line in segment.lines],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _lines_of(row: LogSegmentRow) -> list[StoredLine]:
    return [
        StoredLine(at=datetime.fromisoformat(at), stream=stream, text=text, device=row.device_key)
        for at, stream, text in json.loads(row.body)
    ]


async def has_segment(
    *, session: AsyncSession, tenant_id: str, device_key: str, segment: LogSegment
) -> bool:
    found = await session.scalar(
        select(LogSegmentRow.id).where(
            LogSegmentRow.tenant_id == tenant_id,
            LogSegmentRow.container_id == segment.container_id,
            LogSegmentRow.device_key == device_key,
            LogSegmentRow.start_at == segment.start_at,
            LogSegmentRow.start_skip == segment.start_skip,
        )
    )
    return found is not None


async def store(
    *, session: AsyncSession, tenant_id: str, device_key: str, segment: LogSegment
) -> bool:
    """Keep ``segment``; False when it was kept already (a repeat after a lost answer)."""
    if await has_segment(
        session=session, tenant_id=tenant_id, device_key=device_key, segment=segment
    ):
        return False
    body = _encoded(segment)
    session.add(
        LogSegmentRow(
            tenant_id=tenant_id,
            container_id=segment.container_id,
            device_key=device_key,
            start_at=segment.start_at,
            start_skip=segment.start_skip,
            end_at=segment.end_at,
            line_count=len(segment.lines),
            size=len(body.encode()),
            body=body,
            received_at=datetime.now(UTC),
        )
    )
    return True


async def tail(
    *,
    session: AsyncSession,
    tenant_id: str,
    container_id: str,
    lines: int,
    before: datetime | None = None,
) -> list[StoredLine]:
    """The container's last ``lines`` stored lines (those stamped before ``before`` only),
    oldest first, from whichever nodes shipped them."""
    if lines <= 0:
        return []
    query = select(LogSegmentRow).where(
        LogSegmentRow.tenant_id == tenant_id, LogSegmentRow.container_id == container_id
    )
    if before is not None:
        query = query.where(LogSegmentRow.start_at < before)
    rows: list[LogSegmentRow] = []
    gathered = 0
    while gathered < lines:
        page: Sequence[LogSegmentRow] = (
            await session.scalars(
                query.order_by(LogSegmentRow.start_at.desc(), LogSegmentRow.start_skip.desc())
                .offset(len(rows))
                .limit(READ_PAGE)
            )
        ).all()
        if not page:
            break
        rows.extend(page)
        gathered += sum(row.line_count for row in page)
    if rows and gathered >= lines:
        # Two nodes' segments can overlap in time (a migration's source and target both
        # running a moment): take in older segments that reach into the tail too.
        earliest = min(row.start_at for row in rows)
        overlapping = await session.scalars(
            query.where(LogSegmentRow.start_at < earliest, LogSegmentRow.end_at >= earliest)
        )
        rows.extend(overlapping)
    ordered = sorted(rows, key=lambda row: (row.start_at, row.start_skip, row.id))
    # A stable sort: lines of one instant keep the order their node shipped them in.
    merged = sorted((line for row in ordered for line in _lines_of(row)), key=lambda one: one.at)
    if before is not None:
        merged = [line for line in merged if line.at < before]
    return merged[-lines:]


async def sweep(*, session: AsyncSession, received_before: datetime) -> int:
    """Forget segments received before ``received_before`` (the retention); how many."""
    result = await session.execute(
        delete(LogSegmentRow).where(LogSegmentRow.received_at < received_before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
