"""Public REST: ``GET /api/v1/events``, the caller's live events as server-sent events."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import Problem

from ..access.live import EVENTS, LiveConnections
from ..deps import CallerDep, RegistryDep
from .hub import EventHub, Listener

router = APIRouter(prefix="/api/v1", tags=["events"])
KEEPALIVE_S = 15.0
DEVICES_REFRESH_S = 60.0
ENDED = "end"
"""The last event of a stream ended by the gateway: ``{"reason"}`` (access_revoked,
role_changed: reconnect to go on with the access you have now)."""


async def _visible_devices(registry: ServiceClient, identity: Identity) -> set[str]:
    keys: set[str] = set()
    cursor: str | None = None
    while True:
        page = (
            await registry.request(
                "GET", "/v1/devices", identity=identity, params={"limit": 1000, "cursor": cursor}
            )
        ).json()
        keys.update(d["key"] for d in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return keys


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        429: {"description": "too_many_streams: you or your tenant hold the most streams"},
        503: {"description": "live_connections_full: the gateway holds all it may"},
    },
)
async def events(request: Request, caller: CallerDep, registry: RegistryDep) -> StreamingResponse:
    """Device status, container status, command, deployment, alert and migration events of
    the caller's tenant, live. A stream whose access is taken away (token revoked, signed
    out, member removed, role changed, account disabled) ends with ``event: end``."""
    identity = caller.identity
    hub: EventHub = request.app.state.events
    live: LiveConnections = request.app.state.live
    lease = live.admit(EVENTS, caller)
    listener = Listener(tenant_id=identity.tenant_id, operator=identity.is_operator)
    try:
        if not identity.is_operator:
            listener.devices = await _visible_devices(registry, identity)
    except BaseException:
        live.release(lease)
        raise
    lease.on_end(lambda reason: listener.offer(ENDED, {"reason": reason}))

    async def stream() -> AsyncIterator[str]:
        hub.add(listener)
        refreshed = asyncio.get_running_loop().time()
        try:
            yield ": connected\n\n"
            while True:
                try:
                    kind, event = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"event: {kind}\ndata: {json.dumps(event)}\n\n"
                if kind == ENDED:
                    return
                now = asyncio.get_running_loop().time()
                if not listener.operator and now - refreshed > DEVICES_REFRESH_S:
                    refreshed = now
                    # On failure keep the last known set; the registry may be restarting.
                    with contextlib.suppress(Problem):
                        listener.devices = await _visible_devices(registry, identity)
        finally:
            hub.remove(listener)
            live.release(lease)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Also when the client left before the first byte, and the stream never ran.
        background=BackgroundTask(live.release, lease),
    )
