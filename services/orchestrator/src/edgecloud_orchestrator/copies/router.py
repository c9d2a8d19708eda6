"""Internal REST: the old copies of a container that returning nodes keep for its tenant.

Their files and logs are read through the container's own ``files`` and ``logs`` with
``?copy=<device>`` (containers/outputs.py)."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import JSONResponse

from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.placements import RetainedCopy
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.db import transaction

from ..containers import service as containers_service
from ..deps import CallerDep, DispatcherDep, SessionsDep
from . import service

router = APIRouter(prefix="/v1/containers", tags=["containers"])
ContainerId = Annotated[str, Path(max_length=64, pattern=OBJECT_ID)]
DeviceKey = Annotated[str, Path(pattern=KEY_PATTERN)]


@router.get("/{container_id}/copies", response_model=list[RetainedCopy])
async def list_copies(
    container_id: ContainerId, caller: CallerDep, sessions: SessionsDep
) -> list[RetainedCopy]:
    """Old copies of the container kept on nodes that came back after it moved on (also
    of a container removed since), newest first."""
    async with sessions() as session:
        container = await containers_service.get_including_removed(
            session=session, caller=caller, container_id=container_id
        )
        rows = await service.list_for(session=session, container=container)
    return [service.to_view(row) for row in rows]


@router.delete("/{container_id}/copies/{device}", status_code=status.HTTP_202_ACCEPTED)
async def remove_copy(
    container_id: ContainerId,
    device: DeviceKey,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    dispatcher: DispatcherDep,
) -> JSONResponse:
    """Remove the copy kept on ``device`` (its node is told now, or when it is back)."""
    ttl = timedelta(seconds=request.app.state.settings.command_ttl_s)
    async with transaction(sessions) as session:
        container = await containers_service.get_including_removed(
            session=session, caller=caller, container_id=container_id
        )
        command = await service.remove(
            session=session, container=container, device_key=device, ttl=ttl
        )
    await dispatcher.deliver(command.id, wait_s=0)
    return JSONResponse({"command": command.id}, status_code=status.HTTP_202_ACCEPTED)
