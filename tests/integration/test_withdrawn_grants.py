"""Withdrawn means withdrawn: once an operator takes a device away from a tenant, the tenant
can no longer act on its containers there (reads and removal stay), their sensor feeds end,
and the operator chooses at withdrawal whether they keep running or stop; the choice is in
the audit log. On a real agent, Docker engine and node broker."""

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import docker, remove_tenant_containers
from tests.integration.test_containers import inspect
from tests.integration.test_gateway_api import assert_problem
from tests.integration.test_interfaces import create, declare
from tests.support.brokers import NodeBroker, client_with, sensor_login
from tests.support.stack import Stack
from tests.support.users import Account, register

pytestmark = pytest.mark.stack


@pytest.fixture
async def neighbour(stack: Stack, api: httpx.AsyncClient, node) -> AsyncIterator[Account]:  # type: ignore[no-untyped-def]
    """Another tenant granted the same device; whatever it leaves on the engine is removed
    afterwards (a leftover would be an orphan to the next test's agent)."""
    agent, _ = node
    other = await register(stack)
    granted = await api.post(
        f"/api/v1/devices/{agent.key}/grants", json={"tenant": other.tenant_id}
    )
    assert granted.status_code == 201, granted.text
    yield other
    remove_tenant_containers(other.tenant_id)


def signed_as(stack: Stack, user: Account) -> dict[str, str]:
    """What the gateway sends the orchestrator on the user's behalf."""
    identity = Identity(
        user_id=user.user_id,
        username=user.username,
        tenant_id=user.tenant_id,
        roles=frozenset({"admin"}),
    )
    token = sign_identity(identity, secret=stack.internal_secret, audience="orchestrator")
    return {IDENTITY_HEADER: token}


async def withdrawal_entry(api: httpx.AsyncClient, key: str, tenant_id: str) -> dict:
    answer = await api.get("/api/v1/audit", params={"action": "device.grant.revoke"})
    assert answer.status_code == 200, answer.text
    mine = [
        entry
        for entry in answer.json()["items"]
        if entry["target"] == f"device:{key}" and entry["detail"].get("tenant") == tenant_id
    ]
    assert mine, answer.json()["items"]
    return mine[0]


def inbox_values(docker_name: str) -> list[str]:
    """The payloads in the container's inbox, read as the node's operator would."""
    done = docker("exec", docker_name, "sh", "-c", "cat /app/inbox.jsonl 2>/dev/null; true")
    return [json.loads(line)["payload"] for line in done.stdout.splitlines() if line]


@ONE_DATABASE
async def test_a_withdrawn_tenant_reads_and_removes_but_no_longer_acts(
    stack, api, client, node, neighbour: Account, node_broker: NodeBroker
) -> None:
    agent, user = node
    key = agent.key
    witness_tenant = neighbour
    topic = f"edgetest/{secrets.token_hex(4)}/temp"
    declared = await declare(
        api, key, "temps", kind="sensor", topic=topic,
        tenants=[user.tenant_id, witness_tenant.tenant_id],
    )  # fmt: skip
    assert declared.status_code in (200, 201), declared.text
    mine = await create(client, user, key, "fed", subscriptions=[topic])
    witness = await create(client, witness_tenant, key, "witness", subscriptions=[topic])
    assert (mine.status_code, witness.status_code) == (201, 201), (mine.text, witness.text)
    container, other = mine.json(), witness.json()
    sensor = await sensor_login(node_broker, [topic])

    async def publish(value: str) -> None:
        async with client_with("127.0.0.1", node_broker.port, sensor) as broker:
            await broker.publish(topic, value.encode(), qos=1)

    async def both_fed() -> bool:
        await publish("before")
        await asyncio.sleep(0.3)
        return "before" in inbox_values(container["name"]) and "before" in inbox_values(
            other["name"]
        )

    await eventually(both_fed, timeout=30, interval=0.5)

    withdrawn = await api.delete(f"/api/v1/devices/{key}/grants/{user.tenant_id}")
    assert withdrawn.status_code == 204, withdrawn.text

    # Acting on it is refused, each with the same problem.
    path = f"/api/v1/containers/{container['id']}"
    for action in ("start", "stop", "restart"):
        assert_problem(
            await client.post(f"{path}/{action}", headers=user.headers), 403, "device_not_granted"
        )
    assert_problem(
        await client.post(f"{path}/exec", json={"cmd": ["true"]}, headers=user.headers),
        403,
        "device_not_granted",
    )
    deploy = {"artifact": str(uuid.uuid4()), "script": str(uuid.uuid4())}
    assert_problem(
        await client.post(f"{path}/deploy", json=deploy, headers=user.headers),
        403,
        "device_not_granted",
    )
    # What the gateway asks before it opens a shell (edgecloud_gateway.terminal).
    async with httpx.AsyncClient(base_url=stack.url("orchestrator"), timeout=10) as orchestrator:
        assert_problem(
            await orchestrator.get(
                f"/v1/containers/{container['id']}/shell", headers=signed_as(stack, user)
            ),
            403,
            "device_not_granted",
        )
        admitted = await orchestrator.get(
            f"/v1/containers/{other['id']}/shell", headers=signed_as(stack, witness_tenant)
        )
        assert admitted.status_code == 200, admitted.text
        assert admitted.json()["id"] == other["id"]
        # Another tenant's container is a 404 there, as everywhere.
        assert_problem(
            await orchestrator.get(
                f"/v1/containers/{container['id']}/shell", headers=signed_as(stack, witness_tenant)
            ),
            404,
            "container_not_found",
        )
    # A create there: the device is not shown to the tenant any more.
    assert_problem(await create(client, user, key, "again"), 404, "device_not_found")

    # Reads stay.
    shown = await client.get(path, headers=user.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["state"] == "running"  # kept: the default
    listed = await client.get("/api/v1/containers", headers=user.headers)
    assert container["id"] in [c["id"] for c in listed.json()["items"]]
    logs = await client.get(f"{path}/logs", params={"tail": 10}, headers=user.headers)
    assert logs.status_code == 200, logs.text
    copies = await client.get(f"{path}/copies", headers=user.headers)
    assert copies.status_code == 200, copies.text

    # Its sensor feed is cut; the other tenant's goes on (the witness that it was sent).
    async def witness_fed() -> bool:
        await publish("after")
        await asyncio.sleep(0.3)
        return "after" in inbox_values(other["name"])

    await eventually(witness_fed, timeout=30, interval=0.5)
    await publish("after-2")

    async def witness_has_all() -> bool:
        return "after-2" in inbox_values(other["name"])

    await eventually(witness_has_all, timeout=30)
    assert "after" not in inbox_values(container["name"])
    assert "after-2" not in inbox_values(container["name"])
    running = inspect(container["name"])
    assert running is not None
    assert running["State"]["Running"]

    entry = await withdrawal_entry(api, key, user.tenant_id)
    assert entry["outcome"] == "success"
    assert entry["detail"]["containers"] == "keep"
    assert entry["detail"]["unsubscribed"] == [container["id"]]
    assert entry["detail"]["stopped"] == []

    # Removing it stays allowed: the tenant cleans up.
    removed = await client.delete(path, headers=user.headers)
    assert removed.status_code == 204, removed.text
    assert inspect(container["name"]) is None
    # The other tenant's container was never touched.
    assert (
        await client.get(f"/api/v1/containers/{other['id']}", headers=witness_tenant.headers)
    ).json()["state"] == "running"
    await client.delete(f"/api/v1/containers/{other['id']}", headers=witness_tenant.headers)


@ONE_DATABASE
async def test_an_operator_may_stop_the_containers_at_withdrawal(
    stack, api, client, node, neighbour: Account
) -> None:
    agent, user = node
    key = agent.key
    first = await create(client, user, key, "one")
    second = await create(client, user, key, "two")
    theirs = await create(client, neighbour, key, "three")
    assert {a.status_code for a in (first, second, theirs)} == {201}, (first.text, theirs.text)
    mine = [first.json(), second.json()]

    withdrawn = await api.delete(
        f"/api/v1/devices/{key}/grants/{user.tenant_id}", params={"containers": "stop"}
    )
    assert withdrawn.status_code == 204, withdrawn.text

    async def all_stopped() -> bool:
        found = [inspect(container["name"]) for container in mine]
        return all(f is not None and not f["State"]["Running"] for f in found)

    await eventually(all_stopped, timeout=30, interval=0.2)
    for container in mine:
        shown = await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)
        assert shown.json()["desired_state"] == "stopped"
    still = inspect(theirs.json()["name"])
    assert still is not None
    assert still["State"]["Running"]

    entry = await withdrawal_entry(api, key, user.tenant_id)
    assert entry["detail"]["containers"] == "stop"
    assert sorted(entry["detail"]["stopped"]) == sorted(c["id"] for c in mine)
    # And it cannot start them again.
    assert_problem(
        await client.post(f"/api/v1/containers/{mine[0]['id']}/start", headers=user.headers),
        403,
        "device_not_granted",
    )
    await client.delete(f"/api/v1/containers/{theirs.json()['id']}", headers=neighbour.headers)


@ONE_DATABASE
async def test_a_withdrawal_with_an_unknown_choice_is_refused_and_changes_nothing(
    api, client, node
) -> None:
    agent, user = node
    for bad in ("maybe", "STOP", ""):
        refused = await api.delete(
            f"/api/v1/devices/{agent.key}/grants/{user.tenant_id}", params={"containers": bad}
        )
        body = assert_problem(refused, 422, "validation_failed")
        assert "containers" in body["detail"]
    grants = (await api.get(f"/api/v1/devices/{agent.key}/grants")).json()["items"]
    assert user.tenant_id in [g["tenant"] for g in grants]
    shown = await client.get(f"/api/v1/devices/{agent.key}", headers=user.headers)
    assert shown.status_code == 200, shown.text
