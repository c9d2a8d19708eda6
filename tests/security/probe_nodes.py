"""Test device sessions that answer the orchestrator's commands the way a node does."""

import secrets
from typing import Any

import httpx

from edgecloud_agent.uplink.wamp import Uplink
from edgecloud_contracts import uris
from tests.support.stack import Stack
from tests.support.users import Account


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


async def create_container(stack: Stack, account: Account, key: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        created = await client.post(
            "/api/v1/containers",
            json={"device": key, "name": "web", "image": "edgecloud/busybox:latest"},
            headers=account.headers,
        )
    assert created.status_code in (201, 202), created.text
    return dict(created.json())
