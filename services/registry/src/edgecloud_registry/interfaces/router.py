"""Internal REST: a node's interfaces (operators declare them; tenants read theirs)."""

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.interfaces import (
    INTERFACE_NAME_PATTERN,
    InterfaceDeclaration,
    InterfaceView,
)

from ..deps import CallerDep, OperatorDep, SessionDep
from . import service

router = APIRouter(prefix="/v1/devices", tags=["interfaces"])

DeviceKey = Annotated[str, Path(pattern=KEY_PATTERN)]
InterfaceName = Annotated[str, Path(pattern=INTERFACE_NAME_PATTERN)]


@router.get("/{key}/interfaces", response_model=list[InterfaceView])
async def list_interfaces(
    key: DeviceKey, session: SessionDep, caller: CallerDep
) -> list[InterfaceView]:
    return await service.list_interfaces(session=session, caller=caller, key=key)


@router.put(
    "/{key}/interfaces/{name}",
    status_code=status.HTTP_201_CREATED,
    response_model=InterfaceView,
    responses={200: {"model": InterfaceView, "description": "replaced"}},
)
async def declare_interface(
    key: DeviceKey,
    name: InterfaceName,
    body: InterfaceDeclaration,
    session: SessionDep,
    operator: OperatorDep,
    response: Response,
) -> InterfaceView:
    view, created = await service.declare(
        session=session, caller=operator, key=key, name=name, declaration=body
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return view


@router.delete("/{key}/interfaces/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_interface(
    key: DeviceKey, name: InterfaceName, session: SessionDep, operator: OperatorDep
) -> None:
    await service.remove(session=session, caller=operator, key=key, name=name)
