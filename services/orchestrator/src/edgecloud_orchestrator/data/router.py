"""Internal REST: a container's collected data, for graphs."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from edgecloud_contracts.containers import DATA_NAME_PATTERN, DataSeries
from edgecloud_contracts.text import OBJECT_ID

from ..containers import service as containers_service
from ..deps import CallerDep, SessionsDep
from . import service

router = APIRouter(prefix="/v1/containers", tags=["data"])


@router.get("/{container_id}/data", response_model=DataSeries)
async def data(
    container_id: Annotated[str, Path(max_length=64, pattern=OBJECT_ID)],
    caller: CallerDep,
    sessions: SessionsDep,
    since: datetime | None = None,
    until: datetime | None = None,
    name: Annotated[str | None, Query(pattern=DATA_NAME_PATTERN)] = None,
) -> DataSeries:
    """The data points the container's application published, per name, oldest first."""
    async with sessions() as session:
        await containers_service.get_including_removed(
            session=session, caller=caller, container_id=container_id
        )
        return await service.series(
            session=session, container_id=container_id, since=since, until=until, name=name
        )
