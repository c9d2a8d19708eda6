"""Test devices for the security tests: offline ones known from one heartbeat, and sessions
that answer the orchestrator's commands the way a node does; and the services' health."""

import secrets
from typing import Any

import httpx

from edgecloud_agent.uplink.wamp import Uplink
from edgecloud_contracts import uris
from edgecloud_contracts.uris import SERVICE_AUTHIDS
from tests.support.beats import heartbeat
from tests.support.stack import Stack
from tests.support.users import Account
from tests.support.wamp import device_session, probe_key


async def offline_device(
    stack: Stack, api: httpx.AsyncClient, token: str, *, tenant_id: str, **beat: Any
) -> str:
    """A device enrolled with ``token`` (one heartbeat, then gone: offline), granted by the
    operator's ``api`` to ``tenant_id``. Creates on it wait with their command queued (202)."""
    key = probe_key()
    async with device_session(stack, key=key, token=token) as uplink:
        await uplink.call(uris.HEARTBEAT, heartbeat(key, **beat), timeout=5)
    granted = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": tenant_id})
    assert granted.status_code == 201, granted.text
    return key


async def assert_services_healthy(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for service in sorted(SERVICE_AUTHIDS):
            answer = await client.get(f"{stack.url(service)}/healthz")
            assert answer.status_code == 200, (service, answer.text)


async def answer_creates(uplink: Uplink, key: str) -> None:
    """Answer container.create like a node whose container then runs."""

    async def create(command: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {
            "command_id": command["id"],
            "ok": True,
            "container": {
                "container_id": command["container_id"],
                "docker_id": secrets.token_hex(32),
                "docker_name": command["docker_name"],
                "image": "edgecloud/busybox:latest",
                "state": "running",
            },
        }

    await uplink.register(uris.device_procedure(key, uris.container_operation("create")), create)


async def create_container(
    stack: Stack, account: Account, key: str, *, expect: tuple[int, ...] = (201, 202)
) -> dict[str, Any]:
    """Container ``web`` on ``key``: 201 from a node that answers, 202 from an offline one."""
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        created = await client.post(
            "/api/v1/containers",
            json={"device": key, "name": "web", "image": "edgecloud/busybox:latest"},
            headers=account.headers,
        )
    assert created.status_code in expect, created.text
    return dict(created.json())
