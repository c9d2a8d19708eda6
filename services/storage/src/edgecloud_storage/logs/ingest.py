"""A node's log segment, from the request's bytes to the database.

Its guarantee: a segment is stored whole or not at all, for the tenant and device its grant
names (never what the node says), once however often the node sends it; anything else is
refused with a problem and leaves nothing behind.
"""

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.log_segments import MAX_SEGMENT_BYTES, LogSegment, SegmentStored
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.transfer_tokens import TransferGrant

from . import service
from .exceptions import SegmentMalformed, SegmentNotGranted, SegmentTooLarge


def parse(body: bytes, *, grant: TransferGrant) -> LogSegment:
    """The segment in ``body``, if it is one and of the granted container."""
    if len(body) > MAX_SEGMENT_BYTES:
        raise SegmentTooLarge(size=len(body), limit=MAX_SEGMENT_BYTES)
    try:
        segment = LogSegment.model_validate_json(body)
    except ValidationError as err:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in err.errors()})
        raise SegmentMalformed(
            f"not a log segment: {', '.join(fields)}"[:500], fields=fields[:20]
        ) from err
    if segment.container_id != grant.artifact_id:
        raise SegmentNotGranted(named=segment.container_id, granted=grant.artifact_id)
    return segment


async def ingest(
    sessions: async_sessionmaker[AsyncSession], segment: LogSegment, *, grant: TransferGrant
) -> SegmentStored:
    try:
        async with transaction(sessions) as session:
            stored = await service.store(
                session=session,
                tenant_id=grant.tenant_id,
                device_key=grant.device_key,
                segment=segment,
            )
    except IntegrityError:
        # The same segment, sent again while the first was being stored.
        stored = False
    return SegmentStored(stored=stored, lines=len(segment.lines))
