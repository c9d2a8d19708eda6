"""Internal REST: containers, on behalf of the gateway's caller."""

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from edgecloud_contracts.artifacts import ArtifactKind
from edgecloud_contracts.containers import (
    IMAGE_PATTERN,
    Action,
    CommandState,
    ContainerPage,
    ContainerRecord,
    ContainerSpec,
    ContainerView,
    CreateContainer,
)
from edgecloud_contracts.devices import PublishedPort
from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.interfaces import InterfaceHolder
from edgecloud_contracts.platforms import ImagePlatforms
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.db import exclusive_transaction, transaction
from edgecloud_servicekit.problems import Forbidden
from edgecloud_servicekit.wamp import WampError

from ..commands.dispatch import Dispatcher
from ..commands.models import CommandRow
from ..deployments.router import complete_artifact, transfer_ref
from ..deps import CallerDep, DispatcherDep, EventsDep, RegistryDep, SessionsDep, StorageDep
from ..withdrawals import service as withdrawals_service
from . import creation, interfaces, placement, ports, service
from .exceptions import MovedElsewhere, NodeRefused
from .fitting import NodeShares
from .models import Container

router = APIRouter(prefix="/v1/containers", tags=["containers"])
images_router = APIRouter(prefix="/v1/images", tags=["images"])
nodes_router = APIRouter(prefix="/v1/nodes", tags=["containers"])
ContainerId = Annotated[str, Path(max_length=64, pattern=OBJECT_ID)]
_IMAGE_KINDS = {ArtifactKind.IMAGE.value, ArtifactKind.FILE.value}


@images_router.get("/platforms", response_model=ImagePlatforms)
async def image_platforms(
    request: Request,
    _: CallerDep,
    image: Annotated[str, Query(max_length=255, pattern=IMAGE_PATTERN)],
) -> ImagePlatforms:
    """The architectures an image is built for, as a create would check them."""
    found = await request.app.state.image_platforms.platforms(image)
    return ImagePlatforms(image=image, platforms=sorted(found) if found is not None else None)


def _ttl(request: Request) -> timedelta:
    return timedelta(seconds=request.app.state.settings.command_ttl_s)


def _shares(request: Request) -> NodeShares:
    settings = request.app.state.settings
    return NodeShares(
        memory=settings.tenant_node_memory_share,
        cpus=settings.tenant_node_cpu_share,
        pids=settings.tenant_node_pids_share,
    )


async def _outcome(
    request: Request,
    sessions: SessionsDep,
    dispatcher: Dispatcher,
    command: CommandRow,
    *,
    success: int,
) -> Response:
    """Send the command now and answer with its outcome: done, failed, or waiting (202)."""
    done = await dispatcher.deliver(command.id, wait_s=request.app.state.settings.reply_wait_s)
    async with sessions() as session:
        container = await session.get(Container, command.container_id)
    assert container is not None
    if done.state == CommandState.SUCCEEDED:
        if success == status.HTTP_204_NO_CONTENT:
            return Response(status_code=success)
        return JSONResponse(service.to_view(container).model_dump(mode="json"), status_code=success)
    if done.state == CommandState.FAILED:
        raise NodeRefused(
            f"the device could not {done.action}: {done.error}",
            code=done.error_code or "node_error",
            container=container.id,
            command=done.id,
        )
    view = service.to_view(container, command=done.id)
    return JSONResponse(view.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ContainerView)
async def create_container(
    body: CreateContainer,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    registry: RegistryDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
) -> Response:
    """201 once the device has created and started it; 202 with a command id when the
    device is offline or still working."""
    image_archive = build_context = None
    if body.image_artifact is not None:
        # The node loads the image from the tenant's archive: no registry to ask.
        archive = await complete_artifact(
            storage, caller, body.image_artifact, kinds=_IMAGE_KINDS, role="image archive"
        )
        image_archive = transfer_ref(archive)
        image_platforms = None
    elif body.build_artifact is not None:
        # Built on the node, for the node's own architecture.
        context = await complete_artifact(
            storage,
            caller,
            body.build_artifact,
            kinds={ArtifactKind.FILE.value},
            role="build context",
        )
        build_context = transfer_ref(context)
        image_platforms = None
    else:
        image_platforms = await request.app.state.image_platforms.platforms(body.image)
    device = await placement.choose_device(
        registry=registry,
        sessions=sessions,
        caller=caller,
        request=body,
        image_platforms=image_platforms,
    )
    wanted = await interfaces.resolve(
        registry=registry, caller=caller, request=body, device_key=device["key"]
    )
    _, command = await creation.record(
        sessions=sessions,
        caller=caller,
        request=body,
        device=device,
        shares=_shares(request),
        ttl=_ttl(request),
        holds=wanted,
        registry=registry,
        image_archive=image_archive,
        build_context=build_context,
    )
    return await _outcome(request, sessions, dispatcher, command, success=status.HTTP_201_CREATED)


@router.get("", response_model=ContainerPage)
async def list_containers(
    caller: CallerDep,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    device: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
) -> ContainerPage:
    async with sessions() as session:
        rows, next_cursor = await service.list_for(
            session=session, caller=caller, limit=limit, cursor=cursor, device=device
        )
    return ContainerPage(items=[service.to_view(r) for r in rows], next_cursor=next_cursor)


@router.get("/{container_id}", response_model=ContainerView)
async def get_container(
    container_id: ContainerId,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    dispatcher: DispatcherDep,
    events: EventsDep,
    live: bool = False,
) -> ContainerView:
    """The container; with ``live=true`` its state is asked from the device first."""
    async with sessions() as session:
        container, waiting = await service.get_with_waiting(
            session=session, caller=caller, container_id=container_id
        )
    if not live:
        return service.to_view(container, command=waiting)
    try:
        result = await dispatcher.inspect(
            device_key=container.device_key,
            container_id=container.id,
            docker_name=container.docker_name,
        )
    except WampError as err:
        raise NodeRefused(f"the device did not answer: {err}", code="device_unreachable") from err
    report = result.container
    # Most answers only confirm what is stored: write (and tell subscribers) only on news.
    if report is not None and service.report_changes(container, report):
        async with transaction(sessions) as session:
            updated = await service.apply_report(
                session=session, device_key=container.device_key, report=report
            )
        if updated is not None:
            container = updated
            await events.container(updated)
    return service.to_view(container, command=waiting)


class Relocation(BaseModel):
    source: Annotated[str, Field(pattern=KEY_PATTERN)]
    target: Annotated[str, Field(pattern=KEY_PATTERN)]
    migration: Annotated[str, Field(min_length=1, max_length=64)]
    sensor_broker: Annotated[str, Field(pattern=r"^mqtt://\S+$", max_length=300)] | None = None
    restart: bool = False
    """The source is lost: the target creates the container afresh (a cold restart)."""
    stored: bool = False
    """Level 1: the target keeps the container's package and runs nothing of it."""


# Before /{id}/{action}, which would take this path and refuse the action.
@router.post("/{container_id}/relocation", response_model=ContainerView)
async def relocate(
    container_id: ContainerId,
    body: Relocation,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    dispatcher: DispatcherDep,
    events: EventsDep,
) -> ContainerView:
    """The migration-scheduler moves the container's record to the node that now runs it,
    or (``restart``) that is to start it afresh."""
    if not caller.is_operator:
        raise Forbidden("only the migration-scheduler moves containers", code="operator_only")
    async with transaction(sessions) as session:
        container, command = await service.relocate(
            session=session,
            container_id=container_id,
            source=body.source,
            target=body.target,
            sensor_broker=body.sensor_broker,
            restart=body.restart,
            stored=body.stored,
            ttl=_ttl(request),
        )
    await events.container(container)
    if command is not None:
        await dispatcher.deliver(command.id, wait_s=0)
        return service.to_view(container, command=command.id)
    return service.to_view(container)


@router.get("/{container_id}/record", response_model=ContainerRecord)
async def container_record(
    container_id: ContainerId, caller: CallerDep, sessions: SessionsDep
) -> ContainerRecord:
    """What the cloud holds of a container, for the migration-scheduler: a migration's
    target creates this, not what the source node says. Its generation is the next
    placement's, the one the target holds once the move is recorded."""
    if not caller.is_operator:
        raise Forbidden("only operators read a container's record", code="operator_only")
    async with sessions() as session:
        row = await service.get_any(session=session, container_id=container_id)
    spec = ContainerSpec.model_validate(row.spec | {"generation": row.generation + 1})
    return ContainerRecord(spec=spec, image_id=row.image_id)


@router.post("/{container_id}/{action}", response_model=ContainerView)
async def act(
    container_id: ContainerId,
    action: Literal["start", "stop", "restart"],
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    dispatcher: DispatcherDep,
    registry: RegistryDep,
) -> Response:
    """Start, stop or restart the container: refused (403 ``device_not_granted``) once its
    device is no longer granted to the caller's tenant."""
    async with sessions() as session:
        held = await service.get(session=session, caller=caller, container_id=container_id)
    if action != "stop":
        # Asked before the transaction: no database lock waits for the registry.
        await interfaces.still_declared(registry=registry, caller=caller, container=held)
    # The grant is asked under the tenant's lock, which a withdrawal takes too (.withdrawals).
    lock = withdrawals_service.tenant_lock(caller.tenant_id)
    async with exclusive_transaction(sessions, lock) as session:
        await withdrawals_service.check_granted(
            registry=registry, caller=caller, device_key=held.device_key, container_id=held.id
        )
        container = await service.get(session=session, caller=caller, container_id=container_id)
        if container.device_key != held.device_key:
            raise MovedElsewhere(container.id, container.device_key)
        if action != "stop":
            await interfaces.hold_again(session, container)
        command = service.act(
            session, caller=caller, container=container, action=Action(action), ttl=_ttl(request)
        )
    return await _outcome(request, sessions, dispatcher, command, success=status.HTTP_200_OK)


@router.delete("/{container_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove(
    container_id: ContainerId,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    dispatcher: DispatcherDep,
) -> Response:
    async with transaction(sessions) as session:
        container = await service.get(session=session, caller=caller, container_id=container_id)
        command = service.act(
            session, caller=caller, container=container, action=Action.REMOVE, ttl=_ttl(request)
        )
    return await _outcome(
        request, sessions, dispatcher, command, success=status.HTTP_204_NO_CONTENT
    )


class NodeContainer(BaseModel):
    id: str
    tenant: str


@nodes_router.get("/{device}/containers", response_model=list[NodeContainer])
async def containers_on_node(
    device: Annotated[str, Path(pattern=KEY_PATTERN)], caller: CallerDep, sessions: SessionsDep
) -> list[NodeContainer]:
    """Every tenant's live containers on a node: for the migration-scheduler, when the node
    is lost and they must start elsewhere."""
    if not caller.is_operator:
        raise Forbidden("only operators see every tenant's containers", code="operator_only")
    async with sessions() as session:
        rows = await service.on_node(session=session, device_key=device)
    return [NodeContainer(id=r.id, tenant=r.tenant_id) for r in rows]


class NodeReservation(BaseModel):
    device: str
    memory: int
    """Bytes the memory limits of its live containers hold."""


@nodes_router.get("/reserved", response_model=list[NodeReservation])
async def reserved_on_nodes(caller: CallerDep, sessions: SessionsDep) -> list[NodeReservation]:
    """What live containers hold of each node, by the cloud's own count: for the
    migration-scheduler, which believes a node's report of its free memory only up to it."""
    if not caller.is_operator:
        raise Forbidden("only operators see every node's reservations", code="operator_only")
    async with sessions() as session:
        held = await service.memory_reserved(session)
    return [NodeReservation(device=key, memory=memory) for key, memory in sorted(held.items())]


@nodes_router.get("/ports", response_model=list[PublishedPort])
async def published_ports(caller: CallerDep, sessions: SessionsDep) -> list[PublishedPort]:
    """The host ports live containers publish on every node: for the migration-scheduler,
    which places moving containers where their ports are free."""
    if not caller.is_operator:
        raise Forbidden("only operators see every tenant's ports", code="operator_only")
    async with sessions() as session:
        return await ports.published(session)


@nodes_router.get("/{device}/interface-holders", response_model=dict[str, list[InterfaceHolder]])
async def interface_holders(
    device: Annotated[str, Path(pattern=KEY_PATTERN)], caller: CallerDep, sessions: SessionsDep
) -> dict[str, list[InterfaceHolder]]:
    """The containers holding each interface of the node now; another tenant's unnamed."""
    async with sessions() as session:
        return await interfaces.holders(session, caller=caller, device_key=device)
