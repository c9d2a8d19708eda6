"""Internal REST: what comes out of a container: its logs, its files, a command's output.

Logs are asked from the node like inspect (never queued); a followed log asks again for
the lines after the last one seen. Nodes ship containers' output to storage as it comes
(:mod:`.shipped_logs`): what a node does not have (lines from before a migration, a lost
node's, a removed container's) is read from there.
"""

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts import errors
from edgecloud_contracts.artifacts import ArtifactKind
from edgecloud_contracts.containers import (
    Action,
    ContainerView,
    CopyFiles,
    FilesAccepted,
    FilesOrder,
    LogsAnswer,
)
from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.shell import ExecRequest, ExecResult
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import Conflict, Unavailable
from edgecloud_servicekit.wamp import WampCallError, WampError

from ..commands import service as commands_service
from ..commands.dispatch import Dispatcher
from ..copies import service as copies_service
from ..deps import CallerDep, DispatcherDep, RegistryDep, SessionsDep, StorageDep
from ..withdrawals import service as withdrawals_service
from . import service
from .models import Container
from .shipped_logs import stored_logs, with_history
from .sse import event, log_events

router = APIRouter(prefix="/v1/containers", tags=["containers"])
ContainerId = Annotated[str, Path(max_length=64, pattern=OBJECT_ID)]
CopyOn = Annotated[
    str | None,
    Query(pattern=KEY_PATTERN, description="the old copy kept on this node (see /copies)"),
]
KEEPALIVE_S = 15.0


@router.post(
    "/{container_id}/files", status_code=status.HTTP_202_ACCEPTED, response_model=FilesAccepted
)
async def copy_files(
    container_id: ContainerId,
    body: CopyFiles,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    copy: CopyOn = None,
) -> JSONResponse:
    """Copy a file or directory out of the container into a new artifact (a tar). The
    artifact completes once the node has sent it; the command tells if it could not.
    ``copy``: out of its old copy kept on that node."""
    settings = request.app.state.settings
    async with sessions() as session:
        container, device_key = await _source(session, caller, container_id, copy)
    artifact = (
        await storage.request(
            "POST",
            "/v1/artifacts/expected",
            identity=caller,
            json={
                "name": archive_name(body.path),
                "kind": ArtifactKind.RESULT.value,
                "container_id": container.id,
                "device_key": device_key,
            },
        )
    ).json()
    async with transaction(sessions) as session:
        command = commands_service.enqueue(
            session,
            tenant_id=caller.tenant_id,
            container_id=container.id,
            device_key=device_key,
            docker_name=container.docker_name,
            action=Action.FILES,
            ttl=timedelta(seconds=settings.command_ttl_s),
            files=FilesOrder(path=body.path, artifact_id=artifact["id"], url=""),
        )
    await dispatcher.deliver(command.id, wait_s=0)
    accepted = FilesAccepted(artifact=artifact["id"], command=command.id)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)


async def _source(
    session: AsyncSession, caller: Identity, container_id: str, copy: str | None
) -> tuple[Container, str]:
    """The container and the node to read it on: its own, or that of its kept ``copy``."""
    if copy is None:
        container = await service.get(session=session, caller=caller, container_id=container_id)
        return container, container.device_key
    container = await service.get_including_removed(
        session=session, caller=caller, container_id=container_id
    )
    await copies_service.get_kept(session=session, container=container, device_key=copy)
    return container, copy


def archive_name(path: str) -> str:
    """A file name for the tar of ``path``: its last part, made safe."""
    last = PurePosixPath(path).name or "root"
    safe = re.sub(r"[^A-Za-z0-9_.+,=@()-]", "_", last).lstrip("._-+,=@()") or "files"
    return f"{safe[:190]}.tar"


async def _enterable(
    sessions: SessionsDep, registry: ServiceClient, caller: Identity, container_id: str
) -> Container:
    """The caller's running container, on a device still granted to its tenant."""
    async with sessions() as session:
        container = await service.get(session=session, caller=caller, container_id=container_id)
    await withdrawals_service.check_granted(
        registry=registry, caller=caller, device_key=container.device_key, container_id=container.id
    )
    if container.state != service.RUNNING:
        raise Conflict(
            f"the container is {container.state}, not running", code="container_not_running"
        )
    return container


@router.get("/{container_id}/shell", response_model=ContainerView)
async def shell_admission(
    container_id: ContainerId, caller: CallerDep, sessions: SessionsDep, registry: RegistryDep
) -> ContainerView:
    """May the caller open a shell in the container now: the container if so; 403
    ``device_not_granted`` once its device is no longer granted to the caller's tenant,
    409 ``container_not_running``. The gateway asks this before every shell it opens."""
    return service.to_view(await _enterable(sessions, registry, caller, container_id))


@router.post("/{container_id}/exec", response_model=ExecResult)
async def exec_command(
    container_id: ContainerId,
    body: ExecRequest,
    caller: CallerDep,
    sessions: SessionsDep,
    dispatcher: DispatcherDep,
    registry: RegistryDep,
) -> ExecResult:
    """Run ``cmd`` inside the running container (as its own user, within its hardening)
    and answer with its exit code and output; a command still running at ``timeout_s`` is
    killed and answered with ``timed_out``. Refused (403 ``device_not_granted``) once the
    container's device is no longer granted to the caller's tenant."""
    container = await _enterable(sessions, registry, caller, container_id)
    try:
        return await dispatcher.exec(container, body)
    except WampCallError as err:
        if err.error == errors.NOT_FOUND:
            raise Conflict(
                "the container is not running on its device", code="container_not_running"
            ) from err
        raise Unavailable(f"the device could not run it: {err}", code="exec_failed") from err
    except WampError as err:
        raise Unavailable(f"the device did not answer: {err}", code="device_unreachable") from err


@router.get(
    "/{container_id}/logs",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}, "text/event-stream": {}}}},
)
async def logs(
    container_id: ContainerId,
    request: Request,
    caller: CallerDep,
    sessions: SessionsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    tail: Annotated[int, Query(ge=0, le=10000)] = 100,
    follow: bool = False,
    copy: CopyOn = None,
) -> Response:
    """The last ``tail`` lines (text/plain); ``follow=true`` streams them and every new
    line as server-sent events (``event: log``), ending with ``event: end``. ``copy``: of
    its old copy kept on that node."""
    if copy is not None:
        async with sessions() as session:
            container, _ = await _source(session, caller, container_id, copy)
        try:
            kept = await dispatcher.logs(container, tail=tail, device_key=copy)
        except WampError as err:
            raise Unavailable(
                f"the device did not answer: {err}", code="device_unreachable"
            ) from err
        return PlainTextResponse("".join(f"{line.text}\n" for line in kept.lines))
    async with sessions() as session:
        container = await service.get_including_removed(
            session=session, caller=caller, container_id=container_id
        )
    if container.removed_at is not None:
        return await stored_logs(storage, caller, container, tail=tail, follow=follow)
    try:
        first = await dispatcher.logs(container, tail=tail)
    except WampError as err:
        # The node is away (lost, offline): what it and the nodes before it shipped.
        return await stored_logs(
            storage, caller, container, tail=tail, follow=follow, unreachable=err
        )
    first = await with_history(storage, caller, container, first, tail=tail)
    if not follow:
        return PlainTextResponse("".join(f"{line.text}\n" for line in first.lines))
    interval = request.app.state.settings.logs_poll_interval_s
    return StreamingResponse(
        _follow(dispatcher, container, first, interval),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _follow(
    dispatcher: Dispatcher, container: Container, first: LogsAnswer, interval: float
) -> AsyncIterator[str]:
    answer = first
    last_at: datetime | None = None
    seen_at_last: set[str] = set()
    quiet_s = 0.0
    while True:
        fresh = [
            line
            for line in answer.lines
            if last_at is None
            or line.at > last_at
            or (line.at == last_at and line.text not in seen_at_last)
        ]
        for line in fresh:
            yield log_events(line.text)
            if line.at != last_at:
                last_at, seen_at_last = line.at, set()
            seen_at_last.add(line.text)
        if not answer.running and not fresh:
            yield event("end", "the container stopped")
            return
        if fresh:
            quiet_s = 0.0
        elif quiet_s >= KEEPALIVE_S:
            yield ": ping\n\n"
            quiet_s = 0.0
        await asyncio.sleep(interval)
        quiet_s += interval
        try:
            answer = await dispatcher.logs(container, tail=10000, since=last_at)
        except WampError as err:
            yield event("error", f"the device did not answer: {err}")
            return
