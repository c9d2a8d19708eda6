"""Public REST: containers and commands, answered by the orchestrator (a migration by the
migration-scheduler); every action audited."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from edgecloud_contracts.artifacts import Deploy, DeploymentView
from edgecloud_contracts.containers import (
    DATA_NAME_PATTERN,
    IMAGE_PATTERN,
    CommandView,
    ContainerPage,
    ContainerView,
    CopyFiles,
    CreateContainer,
    DataSeries,
    FilesAccepted,
)
from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.migrations import MigrateRequest, MigrationAccepted
from edgecloud_contracts.placements import RetainedCopy
from edgecloud_contracts.platforms import ImagePlatforms
from edgecloud_servicekit.internal_http import passed_on

from ..access.live import LOG_FOLLOW, LiveConnections, until_ended
from ..audit.trail import AuditDep, record_success
from ..deps import CallerDep, IdentityDep, OrchestratorDep, PathId, SchedulerDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["containers"])
CopyOn = Annotated[
    str | None,
    Query(pattern=KEY_PATTERN, description="the old copy kept on this node (see /copies)"),
]


@router.post(
    "/containers",
    status_code=status.HTTP_201_CREATED,
    response_model=ContainerView,
    responses={
        202: {"model": ContainerView, "description": "queued: the device is offline or busy"},
        403: {
            "description": "quota_exceeded; node_share_exceeded: the tenant's containers on "
            "the node would reserve more than its share of the node's memory, cpus or pids "
            "(named in resource)"
        },
        409: {
            "description": "name_taken; port_taken: another container publishes a host port "
            "on the node already; no_matching_device"
        },
        422: {
            "description": "validation_failed; exceeds_device: a limit beyond the node "
            "(named in limit); ports_not_allowed: the node publishes no ports for tenants; "
            "port_out_of_range: a host port outside the node's range; arch_mismatch; ..."
        },
    },
)
async def create_container(
    body: CreateContainer,
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Create and start a container on a device (or one chosen by ``placement``), on its
    tenant's network or none (``network``), publishing ``ports`` from the node's range."""
    entry = trail.begin("container.create", target=f"container:{body.name}", caller=identity)
    answer = await orchestrator.request(
        "POST", "/v1/containers", identity=identity, json=body.model_dump(mode="json")
    )
    created = answer.json()
    entry.target = f"container:{created['id']}"
    trail.note(device=created["device"], image=body.image, queued=answer.status_code == 202)
    record_success(session, trail)
    return passed_on(answer)


@router.get("/images/platforms", response_model=ImagePlatforms, tags=["images"])
async def image_platforms(
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    image: Annotated[str, Query(max_length=255, pattern=IMAGE_PATTERN)],
) -> Response:
    """The architectures an image is built for (null when the platform cannot tell: the
    image is then tried on any device), to choose a device it runs on."""
    return passed_on(
        await orchestrator.request(
            "GET", "/v1/images/platforms", identity=identity, params={"image": image}
        )
    )


@router.get("/containers", response_model=ContainerPage)
async def list_containers(
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    device: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
) -> Response:
    params = {"limit": limit, "cursor": cursor, "device": device}
    return passed_on(
        await orchestrator.request("GET", "/v1/containers", identity=identity, params=params)
    )


@router.get("/containers/{container_id}", response_model=ContainerView)
async def get_container(
    container_id: PathId, identity: IdentityDep, orchestrator: OrchestratorDep, live: bool = False
) -> Response:
    """The container; ``live=true`` asks the device for its state first."""
    params = {"live": "true" if live else None}
    return passed_on(
        await orchestrator.request(
            "GET", f"/v1/containers/{container_id}", identity=identity, params=params
        )
    )


@router.post(
    "/containers/{container_id}/deploy",
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: {"description": "{deployment, command, state}; steps follow in events"}},
)
async def deploy(
    container_id: PathId,
    body: Deploy,
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Bring an uploaded application archive and its script into the container and run
    the script; follow it with ``GET /deployments/{id}`` or the event stream."""
    trail.begin("container.deploy", target=f"container:{container_id}", caller=identity)
    answer = await orchestrator.request(
        "POST",
        f"/v1/containers/{container_id}/deploy",
        identity=identity,
        json=body.model_dump(mode="json"),
    )
    trail.note(deployment=answer.json()["deployment"], artifact=body.artifact, script=body.script)
    record_success(session, trail)
    return passed_on(answer)


@router.get("/deployments/{deployment_id}", response_model=DeploymentView)
async def get_deployment(
    deployment_id: PathId, identity: IdentityDep, orchestrator: OrchestratorDep
) -> Response:
    return passed_on(
        await orchestrator.request("GET", f"/v1/deployments/{deployment_id}", identity=identity)
    )


@router.get("/containers/{container_id}/deployments", response_model=list[DeploymentView])
async def list_deployments(
    container_id: PathId,
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    return passed_on(
        await orchestrator.request(
            "GET",
            f"/v1/containers/{container_id}/deployments",
            identity=identity,
            params={"limit": limit},
        )
    )


@router.post(
    "/containers/{container_id}/files",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FilesAccepted,
)
async def copy_files(
    container_id: PathId,
    body: CopyFiles,
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
    copy: CopyOn = None,
) -> Response:
    """Copy a file or directory from inside the container into a new artifact (a tar);
    download it once the artifact is complete. ``copy``: from its old copy kept on that
    node (see ``/copies``)."""
    trail.begin("container.files", target=f"container:{container_id}", caller=identity)
    answer = await orchestrator.request(
        "POST",
        f"/v1/containers/{container_id}/files",
        identity=identity,
        json=body.model_dump(mode="json"),
        params={"copy": copy} if copy else None,
    )
    trail.note(path=body.path, artifact=answer.json()["artifact"], copy=copy)
    record_success(session, trail)
    return passed_on(answer)


@router.get(
    "/containers/{container_id}/logs",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}, "text/event-stream": {}}}},
)
async def logs(
    container_id: PathId,
    request: Request,
    caller: CallerDep,
    orchestrator: OrchestratorDep,
    tail: Annotated[int, Query(ge=0, le=10000)] = 100,
    follow: bool = False,
    copy: CopyOn = None,
) -> Response:
    """The last ``tail`` lines as text; ``follow=true`` streams new lines as server-sent
    events (``event: log``, one line each) until the container stops (``event: end``).
    ``copy``: the lines of its old copy kept on that node (see ``/copies``). A follow whose
    access is taken away ends with ``event: error`` (``access_revoked``, ``role_changed``,
    ``grant_withdrawn``); one too many is 429 ``too_many_follows``."""
    params = {"tail": str(tail), "follow": "true" if follow else "false"}
    path = f"/v1/containers/{container_id}/logs"
    if copy:
        params["copy"] = copy
    if not follow:
        return await orchestrator.forward(request, path, identity=caller.identity, params=params)
    # A follow lasts as long as the container runs: it holds a share of the gateway, and
    # ends when the caller's access to the container does.
    container = (
        await orchestrator.request(
            "GET", f"/v1/containers/{container_id}", identity=caller.identity
        )
    ).json()
    live: LiveConnections = request.app.state.live
    lease = live.admit(LOG_FOLLOW, caller, device=copy or container["device"])
    try:
        answer = await orchestrator.forward(request, path, identity=caller.identity, params=params)
    except BaseException:
        live.release(lease)
        raise
    assert isinstance(answer, StreamingResponse)
    answer.body_iterator = until_ended(answer.body_iterator, lease)
    answer.background = BackgroundTask(live.release, lease)
    return answer


@router.get("/containers/{container_id}/copies", response_model=list[RetainedCopy])
async def list_copies(
    container_id: PathId, identity: IdentityDep, orchestrator: OrchestratorDep
) -> Response:
    """Old copies of the container kept on nodes that came back after it had been placed
    elsewhere: stopped there before they reached the network, their ``/app`` and logs
    kept (read them with ``?copy=<device>`` on ``files`` and ``logs``)."""
    return passed_on(
        await orchestrator.request(
            "GET", f"/v1/containers/{container_id}/copies", identity=identity
        )
    )


@router.delete("/containers/{container_id}/copies/{device}", status_code=status.HTTP_202_ACCEPTED)
async def remove_copy(
    container_id: PathId,
    device: Annotated[str, Path(pattern=KEY_PATTERN)],
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Remove the old copy kept on ``device`` (its node is told now, or when it is back)."""
    trail.begin("container.copy.remove", target=f"container:{container_id}", caller=identity)
    answer = await orchestrator.request(
        "DELETE", f"/v1/containers/{container_id}/copies/{device}", identity=identity
    )
    trail.note(device=device)
    record_success(session, trail)
    return passed_on(answer)


@router.get("/containers/{container_id}/data", response_model=DataSeries)
async def data(
    container_id: PathId,
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    since: datetime | None = None,
    until: datetime | None = None,
    name: Annotated[str | None, Query(pattern=DATA_NAME_PATTERN)] = None,
) -> Response:
    """The data points the container's application published (JSON lines on its output
    after ``EDGECLOUD_DATA ``, or on its topic of the node's broker), per name."""
    params = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "name": name,
    }
    return passed_on(
        await orchestrator.request(
            "GET", f"/v1/containers/{container_id}/data", identity=identity, params=params
        )
    )


@router.post(
    "/containers/{container_id}/migrate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MigrationAccepted,
    responses={
        404: {"description": "container_not_found: no such container, or another tenant's"},
        409: {
            "description": "migration_in_progress: the container is already moving; "
            "holds_hardware: it holds interfaces of its node; port_taken: the device asked "
            "for publishes one of its host ports for another container"
        },
        422: {
            "description": "no_suitable_peer (no device can take it), device_not_eligible "
            "(the device asked for cannot), ports_not_allowed or port_out_of_range (the "
            "device asked for does not publish its ports), or validation_failed"
        },
        503: {"description": "the migration-scheduler (or what it needs) is not available now"},
    },
)
async def migrate(
    container_id: PathId,
    body: MigrateRequest,
    identity: IdentityDep,
    scheduler: SchedulerDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Move the container to ``device``, or to the peer the migration-scheduler picks; follow
    it with ``GET /migrations/{id}`` or the ``migration`` events."""
    trail.begin("container.migrate", target=f"container:{container_id}", caller=identity)
    answer = await scheduler.request(
        "POST",
        "/v1/migrations",
        identity=identity,
        json={"container": container_id, "device": body.device},
    )
    trail.note(migration=answer.json()["migration"], device=body.device)
    record_success(session, trail)
    return passed_on(answer)


# Last: its path would also match deploy, files and migrate above.
@router.post("/containers/{container_id}/{action}", response_model=ContainerView)
async def act(
    container_id: PathId,
    action: Literal["start", "stop", "restart"],
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """Start, stop or restart: 200 with the container, or 202 with a command id while the
    device is offline."""
    trail.begin(f"container.{action}", target=f"container:{container_id}", caller=identity)
    answer = await orchestrator.request(
        "POST", f"/v1/containers/{container_id}/{action}", identity=identity
    )
    trail.note(queued=answer.status_code == 202)
    record_success(session, trail)
    return passed_on(answer)


@router.delete("/containers/{container_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove(
    container_id: PathId,
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    session: SessionDep,
    trail: AuditDep,
) -> Response:
    """204 once removed from the device, or 202 with a command id while it is offline."""
    trail.begin("container.remove", target=f"container:{container_id}", caller=identity)
    answer = await orchestrator.request(
        "DELETE", f"/v1/containers/{container_id}", identity=identity
    )
    trail.note(queued=answer.status_code == 202)
    record_success(session, trail)
    return passed_on(answer)


@router.get("/commands/{command_id}", response_model=CommandView)
async def get_command(
    command_id: PathId, identity: IdentityDep, orchestrator: OrchestratorDep
) -> Response:
    return passed_on(
        await orchestrator.request("GET", f"/v1/commands/{command_id}", identity=identity)
    )
