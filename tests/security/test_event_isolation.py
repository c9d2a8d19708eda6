"""Events never cross tenants: tenant B's device, containers, commands and migrations stay out
of tenant A's live event stream (GET /api/v1/events, which the dashboard reads too), while A's
own events reach it.

The devices are test sessions that answer the orchestrator's commands the way a node does,
so every event is published by the real services through the real router.
"""

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from edgecloud_contracts import uris
from tests.conftest import ONE_DATABASE, eventually
from tests.security.probe_nodes import answer_creates, create_container
from tests.support.beats import heartbeat
from tests.support.users import Account, register
from tests.support.wamp import device_session, probe_key

pytestmark = [pytest.mark.stack, ONE_DATABASE]


class EventLog:
    """Everything one user's event stream delivered, as (kind, event)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.opened = asyncio.Event()

    async def wait_for(self, *wanted: tuple[str, dict[str, Any]], timeout: float) -> None:
        """Until every (kind, fields) in ``wanted`` has been delivered."""

        async def delivered() -> bool:
            return all(self.has(kind, **fields) for kind, fields in wanted)

        await eventually(delivered, timeout=timeout)

    def has(self, kind: str, **fields: Any) -> bool:
        return any(
            k == kind and all(e.get(n) == v for n, v in fields.items()) for k, e in self.events
        )


@asynccontextmanager
async def event_stream(stack, account: Account | dict[str, str]) -> AsyncIterator[EventLog]:
    """``account``: a user, or request headers (the operator's)."""
    headers = account if isinstance(account, dict) else account.headers
    log = EventLog()

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client,
            client.stream("GET", "/api/v1/events", headers=headers) as stream,
        ):
            assert stream.status_code == 200
            kind = ""
            async for line in stream.aiter_lines():
                log.opened.set()
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    log.events.append((kind, json.loads(line.removeprefix("data: "))))

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(10):
            await log.opened.wait()
        yield log
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def test_another_tenants_events_never_reach_a_tenants_stream(stack, api, enrol) -> None:
    a, b = await register(stack), await register(stack)
    a_key, b_key = probe_key(), probe_key()
    async with (
        device_session(stack, key=a_key, token=await enrol()) as a_node,
        device_session(stack, key=b_key, token=await enrol()) as b_node,
    ):
        for key, node, account in ((a_key, a_node, a), (b_key, b_node, b)):
            await node.call(uris.HEARTBEAT, heartbeat(key), timeout=5)
            granted = await api.post(
                f"/api/v1/devices/{key}/grants", json={"tenant": account.tenant_id}
            )
            assert granted.status_code == 201, granted.text
            await answer_creates(node, key)
        async with event_stream(stack, a) as a_log, event_stream(stack, b) as b_log:
            # B's activity first: its device's status, a container created (command and
            # container events), a migration its node asks for, then its node goes away.
            b_container = await create_container(stack, b, b_key)
            await b_node.call(uris.HEARTBEAT, heartbeat(b_key, seq=2), timeout=5)
            await b_node.call(
                uris.MIGRATION_REQUEST,
                {"reason": "cpu", "containers": [b_container["id"]], "detail": "test"},
                timeout=10,
            )
            await b_node.call(
                uris.NODE_REPORT,
                {
                    "id": None,
                    "at": datetime.now(UTC).isoformat(),
                    "kind": "container",
                    "container": {
                        "container_id": b_container["id"],
                        "docker_id": secrets.token_hex(32),
                        "docker_name": "web",
                        "image": "edgecloud/busybox:latest",
                        "state": "exited",
                        "exit_code": 3,
                    },
                },
                timeout=5,
            )
            await b_node.close()
            # B's own stream saw all of it: the gateway has fanned it out by now.
            await b_log.wait_for(
                ("container.status", {"id": b_container["id"], "state": "exited"}),
                ("command", {"container": b_container["id"]}),
                ("migration", {"container": b_container["id"]}),
                ("device.status", {"key": b_key, "status": "offline"}),
                timeout=15,
            )
            # Then A's own: they reach A (the control).
            a_container = await create_container(stack, a, a_key)
            await a_node.close()
            await a_log.wait_for(
                ("container.status", {"id": a_container["id"]}),
                ("command", {"container": a_container["id"]}),
                ("device.status", {"key": a_key, "status": "offline"}),
                timeout=15,
            )
    leaked = [
        (kind, event)
        for kind, event in a_log.events
        if b.tenant_id in json.dumps(event)
        or b_key in json.dumps(event)
        or b_container["id"] in json.dumps(event)
    ]
    assert not leaked
    assert {event.get("tenant", a.tenant_id) for kind, event in a_log.events} == {a.tenant_id}


async def test_a_grant_taken_away_stops_the_devices_events_at_once(stack, api, enrol) -> None:
    """The stream follows grants as they change, not at its next re-read of the tenant's
    devices (a minute later)."""
    tenant = await register(stack)
    taken_key, given_key = probe_key(), probe_key()
    async with (
        device_session(stack, key=taken_key, token=await enrol()) as taken_node,
        device_session(stack, key=given_key, token=await enrol()) as given_node,
    ):
        for key, node in ((taken_key, taken_node), (given_key, given_node)):
            await node.call(uris.HEARTBEAT, heartbeat(key), timeout=5)
        granted = await api.post(
            f"/api/v1/devices/{taken_key}/grants", json={"tenant": tenant.tenant_id}
        )
        assert granted.status_code == 201, granted.text
        operator = {"Authorization": api.headers["Authorization"]}
        async with event_stream(stack, tenant) as tenant_log, event_stream(stack, operator) as log:
            revoked = await api.delete(f"/api/v1/devices/{taken_key}/grants/{tenant.tenant_id}")
            assert revoked.status_code == 204, revoked.text
            granted = await api.post(
                f"/api/v1/devices/{given_key}/grants", json={"tenant": tenant.tenant_id}
            )
            assert granted.status_code == 201, granted.text
            await taken_node.close()
            await given_node.close()
            # The operator sees both go; the gateway fanned each out to every stream at once.
            await log.wait_for(
                ("device.status", {"key": taken_key, "status": "offline"}),
                ("device.status", {"key": given_key, "status": "offline"}),
                timeout=15,
            )
            await tenant_log.wait_for(
                ("device.status", {"key": given_key, "status": "offline"}), timeout=5
            )
    assert not tenant_log.has("device.status", key=taken_key)
