"""Internal REST: deploy an application into a container, and follow the deployment."""

import asyncio
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse

from edgecloud_contracts.artifacts import (
    ArtifactKind,
    Deploy,
    DeploymentOrder,
    DeploymentView,
    TransferRef,
)
from edgecloud_contracts.containers import Action
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.db import exclusive_transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import Conflict, Unprocessable

from ..commands import service as commands_service
from ..containers import service as containers_service
from ..deps import CallerDep, DispatcherDep, EventsDep, RegistryDep, SessionsDep, StorageDep
from ..withdrawals import service as withdrawals_service
from . import service

router = APIRouter(prefix="/v1", tags=["deployments"])
ObjectPath = Annotated[str, Path(max_length=64, pattern=OBJECT_ID)]

# What each role of a deployment may be (a "file" is whatever the tenant did not label).
_ARCHIVE_KINDS = {ArtifactKind.APPLICATION.value, ArtifactKind.FILE.value}
_SCRIPT_KINDS = {ArtifactKind.SCRIPT.value, ArtifactKind.FILE.value}


async def complete_artifact(
    storage: ServiceClient, caller: Identity, artifact_id: str, *, kinds: set[str], role: str
) -> dict[str, Any]:
    """The tenant's artifact, complete and of a fitting kind (404 if not the tenant's)."""
    artifact: dict[str, Any] = (
        await storage.request("GET", f"/v1/artifacts/{artifact_id}", identity=caller)
    ).json()
    if artifact["state"] != "complete":
        raise Conflict(
            f"the {role} {artifact_id} is still being uploaded", code="artifact_incomplete"
        )
    if artifact["kind"] not in kinds:
        raise Unprocessable(
            f"the {role} must be of kind {' or '.join(sorted(kinds))}, not {artifact['kind']}",
            code="wrong_artifact_kind",
        )
    return artifact


def transfer_ref(artifact: dict[str, Any]) -> TransferRef:
    # The URL is filled with a fresh grant each time the command is sent.
    return TransferRef(
        artifact_id=artifact["id"],
        name=artifact["name"],
        size=artifact["size"],
        sha256=artifact["sha256"],
        url="",
    )


@router.post(
    "/containers/{container_id}/deploy",
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: {"description": "{deployment, command, state}"}},
)
async def deploy(
    container_id: ObjectPath,
    body: Deploy,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    events: EventsDep,
    registry: RegistryDep,
) -> JSONResponse:
    """Bring an application archive and its script into the container and run the script.
    Answers at once; the node reports each step (``GET /v1/deployments/{id}``, events).
    Refused (403 ``device_not_granted``) once the container's device is no longer granted
    to the caller's tenant."""
    async with sessions() as session:
        container = await containers_service.get(
            session=session, caller=caller, container_id=container_id
        )
    # Before the artifacts are looked at, and again under the lock below.
    await withdrawals_service.check_granted(
        registry=registry, caller=caller, device_key=container.device_key, container_id=container.id
    )
    archive, script = await asyncio.gather(
        complete_artifact(storage, caller, body.artifact, kinds=_ARCHIVE_KINDS, role="archive"),
        complete_artifact(storage, caller, body.script, kinds=_SCRIPT_KINDS, role="script"),
    )
    deployment_id = str(uuid.uuid4())
    order = DeploymentOrder(
        deployment_id=deployment_id,
        container_id=container.id,
        docker_name=container.docker_name,
        archive=transfer_ref(archive),
        script=transfer_ref(script),
    )
    # The grant is asked again under the tenant's lock, which a withdrawal takes too.
    lock = withdrawals_service.tenant_lock(caller.tenant_id)
    async with exclusive_transaction(sessions, lock) as session:
        await withdrawals_service.check_granted(
            registry=registry,
            caller=caller,
            device_key=container.device_key,
            container_id=container.id,
        )
        command = commands_service.enqueue(
            session,
            tenant_id=caller.tenant_id,
            container_id=container.id,
            device_key=container.device_key,
            docker_name=container.docker_name,
            action=Action.DEPLOY,
            ttl=timedelta(seconds=request.app.state.settings.command_ttl_s),
            deployment=order,
        )
        row = service.new(
            session,
            deployment_id=deployment_id,
            tenant_id=caller.tenant_id,
            container_id=container.id,
            device_key=container.device_key,
            artifact_id=archive["id"],
            script_id=script["id"],
            command_id=command.id,
        )
    await events.deployment(service.event(row))
    # The node only accepts the order here; the work goes on and is reported.
    done = await dispatcher.deliver(command.id, wait_s=request.app.state.settings.reply_wait_s)
    async with sessions() as session:
        row = await service.get(session=session, caller=caller, deployment_id=deployment_id)
    return JSONResponse(
        {"deployment": row.id, "command": done.id, "state": row.state},
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.get("/deployments/{deployment_id}", response_model=DeploymentView)
async def get_deployment(
    deployment_id: ObjectPath, caller: CallerDep, sessions: SessionsDep
) -> DeploymentView:
    async with sessions() as session:
        row = await service.get(session=session, caller=caller, deployment_id=deployment_id)
    return service.to_view(row)


@router.get("/containers/{container_id}/deployments", response_model=list[DeploymentView])
async def list_deployments(
    container_id: ObjectPath,
    caller: CallerDep,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[DeploymentView]:
    """The container's deployments, newest first."""
    async with sessions() as session:
        await containers_service.get(session=session, caller=caller, container_id=container_id)
        rows = await service.list_for_container(
            session=session, caller=caller, container_id=container_id, limit=limit
        )
    return [service.to_view(r) for r in rows]
