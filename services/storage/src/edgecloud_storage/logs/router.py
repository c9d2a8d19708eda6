"""Internal REST: containers' logs as their nodes shipped them. Nodes upload segments with
a grant for the container; the gateway's caller reads its tenant's."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from edgecloud_contracts.log_segments import (
    SEGMENT_PATH,
    SegmentStored,
    StoredLogs,
)
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.identity import CallerDep

from ..grants import granted
from . import ingest, service

router = APIRouter(prefix="/v1", tags=["logs"])
ContainerId = Annotated[str, Path(max_length=64, pattern=OBJECT_ID)]


@router.post(
    f"/transfers/{{container_id}}/{SEGMENT_PATH}",
    response_model=SegmentStored,
)
async def upload_segment(container_id: ContainerId, request: Request) -> SegmentStored:
    """A node ships a segment of a container's output (its grant names the container).
    The service's body limit bounds what is read; the segment's own limit is checked then."""
    grant = granted(request, container_id, "logs")
    segment = ingest.parse(await request.body(), grant=grant)
    return await ingest.ingest(request.app.state.sessions, segment, grant=grant)


@router.get("/logs/{container_id}", response_model=StoredLogs)
async def stored_logs(
    container_id: ContainerId,
    request: Request,
    caller: CallerDep,
    tail: Annotated[int, Query(ge=0, le=10000)] = 100,
    before: datetime | None = None,
) -> StoredLogs:
    """The caller's tenant's stored lines of the container, oldest first (only those
    stamped before ``before``, when given)."""
    async with request.app.state.sessions() as session:
        lines = await service.tail(
            session=session,
            tenant_id=caller.tenant_id,
            container_id=container_id,
            lines=tail,
            before=before,
        )
    return StoredLogs(lines=lines)
