"""Public API: a command inside a container (REST) and an interactive shell (WebSocket).

Both run inside the container, as its own user and within its hardening, never on the
node; only the container's own tenant may ask (another tenant's container is a 404, as
everywhere). Every exec and every shell is in the audit log: a shell twice, when it opens
(who, which container) and when it ends (how long, how, bytes each way).
"""

import asyncio
import re
import shlex
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket
from pydantic import ValidationError

from edgecloud_contracts.shell import ExecRequest, ExecResult, ShellOpen
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient, passed_on
from edgecloud_servicekit.problems import (
    NotFound,
    Problem,
    Unavailable,
    Unprocessable,
    problem_response,
)
from edgecloud_servicekit.wamp import WampLink

from ..access.live import REASONS, SHELL, Lease, LiveConnections
from ..audit import service as audit
from ..audit.service import FAILURE, SUCCESS, Entry
from ..audit.trail import AuditDep, record_success
from ..deps import IdentityDep, OrchestratorDep, PathId, websocket_caller
from ..settings import GatewaySettings
from . import sessions as shell_sessions
from .bridge import ShellBridge, ShellLimits, ShellOutcome
from .models import ShellSession

router = APIRouter(prefix="/api/v1", tags=["containers"])

_ID = re.compile(OBJECT_ID)
EXEC_SLACK_S = 30.0
"""Beyond the command's own timeout: the way to the node and back."""


def _duration_s(row: ShellSession | None) -> float:
    if row is None or row.closed_at is None:
        return 0.0
    return (row.closed_at - row.opened_at).total_seconds()


def _shown(argv: list[str]) -> str:
    return shlex.join(argv)[:200]


@router.post(
    "/containers/{container_id}/exec",
    response_model=ExecResult,
    responses={
        404: {"description": "container_not_found: no such container, or another tenant's"},
        409: {"description": "container_not_running"},
        503: {"description": "device_unreachable: the node did not answer"},
    },
)
async def exec_command(
    container_id: PathId,
    body: ExecRequest,
    request: Request,
    identity: IdentityDep,
    orchestrator: OrchestratorDep,
    trail: AuditDep,
) -> Response:
    """Run ``cmd`` (an argv list, no shell) inside the running container; the answer has
    its exit code and output (stdout and stderr together, at most 1 MiB: ``truncated``).
    A command still running after ``timeout_s`` is killed (``timed_out``)."""
    trail.begin("container.exec", target=f"container:{container_id}", caller=identity)
    trail.note(cmd=_shown(body.cmd))
    answer = await orchestrator.request(
        "POST",
        f"/v1/containers/{container_id}/exec",
        identity=identity,
        json=body.model_dump(mode="json"),
        timeout_s=body.timeout_s + EXEC_SLACK_S,
    )
    result = answer.json()
    trail.note(exit_code=result["exit_code"], timed_out=result["timed_out"])
    # Its own short transaction: a pooled connection is not held while the command runs.
    async with transaction(request.app.state.sessions) as session:
        record_success(session, trail)
    return passed_on(answer)


@router.websocket("/containers/{container_id}/shell")
async def shell(websocket: WebSocket, container_id: str) -> None:
    """An interactive terminal inside the container (protocol: :mod:`.bridge`). Query:
    ``cmd`` (repeated, the argv; ``sh`` by default), ``cols``, ``rows``. A refusal is an
    HTTP problem answer to the upgrade: 401, 403, 404, 409 container_not_running, 422,
    429 too_many_shells, 503. A shell whose
    access is taken away is closed with an ``error`` message (``access_revoked``,
    ``role_changed``, ``grant_withdrawn``) and close code 4403."""
    app = websocket.app
    settings: GatewaySettings = app.state.settings
    live: LiveConnections = app.state.live
    lease: Lease | None = None
    entry = Entry(action="container.shell.open", target=f"container:{container_id}")
    entry.address = websocket.client.host if websocket.client else ""
    try:
        if not _ID.match(container_id) or len(container_id) > 64:
            raise NotFound("no such container", code="container_not_found")
        held = await websocket_caller(websocket)
        caller = held.identity
        entry.tenant_id, entry.actor_id = caller.tenant_id, caller.user_id
        entry.actor_name = caller.username
        options = _shell_options(websocket.query_params.multi_items())
        entry.detail["cmd"] = _shown(options["cmd"])
        container = await _running_container(app.state.orchestrator, caller, container_id)
        wamp: WampLink = app.state.wamp
        if not wamp.connected:
            raise Unavailable("the router is not reachable now", code="router_unavailable")
        lease = live.admit(SHELL, held, device=container["device"])
        # Last: an admitted session counts against the tenant's limit until it is closed.
        row = await shell_sessions.admit(
            app.state.sessions,
            caller=caller,
            container_id=container_id,
            device_key=container["device"],
            limit=settings.shell_max_per_tenant,
            stale_after=timedelta(seconds=settings.shell_keepalive_s * 3),
        )
        request = ShellOpen(
            session_id=row.id,
            container_id=container_id,
            docker_name=container["name"],
            lease_s=settings.shell_keepalive_s * 3,
            **options,
        )
    except Problem as problem:
        if lease is not None:
            live.release(lease)
        if entry.actor_id is not None:
            entry.detail["code"] = problem.code
            await _audit(app.state.sessions, entry, FAILURE)
        await websocket.send_denial_response(
            problem_response(problem.status, problem.body(), problem.headers)
        )
        return
    except BaseException:
        if lease is not None:
            live.release(lease)
        raise
    try:
        await websocket.accept()
        entry.detail.update(session=row.id, device=container["device"])
        await _audit(app.state.sessions, entry, SUCCESS)
        outcome = await _serve(websocket, wamp, request, lease, settings)
    finally:
        live.release(lease)
    finished = await shell_sessions.finish(app.state.sessions, row.id, outcome)
    closing = Entry(
        action="container.shell.close",
        target=entry.target,
        tenant_id=entry.tenant_id,
        actor_id=entry.actor_id,
        actor_name=entry.actor_name,
        address=entry.address,
        detail={
            "session": row.id,
            "reason": outcome.reason,
            "exit_code": outcome.exit_code,
            "duration_s": round(_duration_s(finished), 3),
            "bytes_in": outcome.bytes_in,
            "bytes_out": outcome.bytes_out,
            "input_calls": outcome.input_calls,
            "output_frames": outcome.output_frames,
        },
    )
    await _audit(app.state.sessions, closing, SUCCESS)


async def _serve(
    websocket: WebSocket,
    wamp: WampLink,
    request: ShellOpen,
    lease: Lease,
    settings: GatewaySettings,
) -> ShellOutcome:
    assert lease.device is not None
    bridge = ShellBridge(
        websocket,
        wamp,
        device_key=lease.device,
        request=request,
        limits=ShellLimits(
            idle_timeout_s=settings.shell_idle_timeout_s,
            keepalive_s=settings.shell_keepalive_s,
            max_duration_s=settings.shell_max_duration_s,
        ),
    )
    # Access taken away closes the shell, however busy it is.
    lease.on_end(lambda reason: bridge.end_for(reason, REASONS.get(reason, reason)))
    alive = asyncio.create_task(_keep_alive(websocket, request.session_id, settings))
    try:
        return await bridge.run()
    finally:
        alive.cancel()


async def _keep_alive(websocket: WebSocket, session_id: str, settings: GatewaySettings) -> None:
    while True:
        await asyncio.sleep(settings.shell_keepalive_s)
        await shell_sessions.touch(websocket.app.state.sessions, session_id)


async def _running_container(
    orchestrator: ServiceClient, caller: Identity, container_id: str
) -> dict[str, Any]:
    """The container, once the orchestrator has checked a shell may open in it: the tenant's
    own, running, on a device still granted to the tenant (403 device_not_granted)."""
    container: dict[str, Any] = (
        await orchestrator.request("GET", f"/v1/containers/{container_id}/shell", identity=caller)
    ).json()
    return container


def _shell_options(query: list[tuple[str, str]]) -> dict[str, Any]:
    """``cmd`` (repeated), ``cols`` and ``rows`` from the query, checked like a body."""
    unknown = sorted({name for name, _ in query} - {"cmd", "cols", "rows"})
    if unknown:
        raise Unprocessable(f"unknown query parameters: {unknown}", code="validation_failed")
    values: dict[str, Any] = {"cmd": [value for name, value in query if name == "cmd"] or ["sh"]}
    for name in ("cols", "rows"):
        given = [value for key, value in query if key == name]
        if given:
            values[name] = given[-1]
    try:
        checked = ShellOpen.model_validate(
            {"session_id": "x", "container_id": "x", "docker_name": "x", **values}
        )
    except ValidationError as err:
        raise Unprocessable(
            f"not a valid shell request: {err.errors()[0]['msg']}", code="validation_failed"
        ) from err
    return {"cmd": list(checked.cmd), "cols": checked.cols, "rows": checked.rows}


async def _audit(sessions: Any, entry: Entry, outcome: str) -> None:
    async with transaction(sessions) as session:
        audit.record(session, entry, outcome=outcome)
