"""Internal REST: a command's story."""

from typing import Annotated

from fastapi import APIRouter, Path

from edgecloud_contracts.containers import CommandView
from edgecloud_contracts.text import OBJECT_ID

from ..deps import CallerDep, SessionsDep
from . import service

router = APIRouter(prefix="/v1/commands", tags=["commands"])


@router.get("/{command_id}", response_model=CommandView)
async def get_command(
    command_id: Annotated[str, Path(max_length=64, pattern=OBJECT_ID)],
    caller: CallerDep,
    sessions: SessionsDep,
) -> CommandView:
    async with sessions() as session:
        return service.to_view(
            await service.get(session=session, caller=caller, command_id=command_id)
        )
