"""Logs outlive their node: a real agent ships a container's output to storage as it runs,
so the tenant reads it through the gateway after the node is gone (its agent stopped, its
container wiped) and after the container's removal; another tenant reads nothing."""

import httpx
import pytest

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import docker, online
from tests.integration.test_applications import running_container
from tests.support.stack import Stack
from tests.support.users import Account, register

pytestmark = [pytest.mark.stack, ONE_DATABASE]

LINES = [f"shipped-{n}" for n in range(1, 41)]
PRINT_THEN_SLEEP = ["sh", "-c", "for n in $(seq 1 40); do echo shipped-$n; done; sleep 3600"]


async def stored_texts(stack: Stack, user: Account, container_id: str) -> list[str]:
    """What storage holds of the container (its internal API, as the tenant)."""
    identity = Identity(user_id="probe", username=user.username, tenant_id=user.tenant_id)
    headers = {
        IDENTITY_HEADER: sign_identity(identity, secret=stack.internal_secret, audience="storage")
    }
    async with httpx.AsyncClient(base_url=stack.url("storage"), timeout=10) as storage:
        answer = await storage.get(
            f"/v1/logs/{container_id}", params={"tail": 1000}, headers=headers
        )
    assert answer.status_code == 200, answer.text
    return [line["text"] for line in answer.json()["lines"]]


async def all_shipped(stack: Stack, user: Account, container_id: str) -> None:
    async def shipped() -> bool:
        return await stored_texts(stack, user, container_id) == LINES

    await eventually(shipped, timeout=30, interval=0.3)


async def test_logs_are_read_after_the_node_is_gone(stack, api, client, node) -> None:
    agent, user = node
    container = await running_container(
        client, user, "talker", device=agent.key, command=PRINT_THEN_SLEEP
    )
    path = f"/api/v1/containers/{container['id']}/logs"
    await all_shipped(stack, user, container["id"])

    # The node goes: its agent stops, and its container with it.
    agent.process.stop()
    docker("rm", "-f", container["name"])

    async def offline() -> bool:
        return not await online(api, agent.key)

    await eventually(offline, timeout=20, interval=0.2)
    logs = await client.get(path, params={"tail": 1000}, headers=user.headers)
    assert logs.status_code == 200, logs.text
    assert logs.text.splitlines() == LINES
    tail = await client.get(path, params={"tail": 5}, headers=user.headers)
    assert tail.text.splitlines() == LINES[-5:]
    async with client.stream(
        "GET", path, params={"follow": "true", "tail": 3}, headers=user.headers
    ) as stream:
        events = [line async for line in stream.aiter_lines() if line.startswith("data: ")]
    assert events == [f"data: {text}" for text in LINES[-3:]] + ["data: the device is unreachable"]

    # Another tenant: the same 404 as for a container that does not exist.
    other = await register(stack)
    assert (await client.get(path, headers=other.headers)).status_code == 404
    assert await stored_texts(stack, other, container["id"]) == []


async def test_logs_are_read_after_the_container_is_removed(stack, client, node) -> None:
    agent, user = node
    container = await running_container(
        client, user, "removed", device=agent.key, command=PRINT_THEN_SLEEP
    )
    removed = await client.delete(f"/api/v1/containers/{container['id']}", headers=user.headers)
    assert removed.status_code in (202, 204), removed.text
    assert docker("inspect", container["name"]).returncode != 0
    # Its last lines were taken before it was removed, and shipped after.
    await all_shipped(stack, user, container["id"])
    logs = await client.get(
        f"/api/v1/containers/{container['id']}/logs", params={"tail": 1000}, headers=user.headers
    )
    assert logs.status_code == 200, logs.text
    assert logs.text.splitlines() == LINES
