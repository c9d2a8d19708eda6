"""Logs across the testbed: a container's output read through the gateway after it moved
from n1 to n2 (n1's lines, then n2's: n2's engine knows only its own), and again once n2,
the node running it, is gone; on the mesh its lines are held and go when the WAN is back."""

import asyncio
import signal
from typing import Any

import httpx
import pytest

from edgecloud_servicekit.identity import IDENTITY_HEADER, Identity, sign_identity
from tests.conftest import eventually
from tests.support.stack import Stack
from tests.support.testbed import TestbedFleet, reachable_stack_of_module
from tests.support.users import Account
from tests.testbed.test_fusion import fusion_pair
from tests.testbed.test_migration import ended, migrate, pair

pytestmark = pytest.mark.stack

stack = reachable_stack_of_module

# Each copy prints its own hostname (the engine's short container id: not the same on the
# two nodes) with a count from 1, so the lines say which node made them and in what order.
TALK = [
    "sh",
    "-c",
    "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo $(hostname) $i; sleep 0.2; done",
]


async def talker(client: httpx.AsyncClient, user: Account, key: str) -> dict[str, Any]:
    made = await client.post(
        "/api/v1/containers",
        json={
            "device": key,
            "name": "talker",
            "image": "edgecloud/busybox:latest",
            "command": TALK,
            "limits": {"memory": 64 << 20, "pids": 64},
        },
        headers=user.headers,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


def runs(text: str) -> list[tuple[str, list[int]]]:
    """The lines as runs of one copy's counts, in the order they are shown."""
    found: list[tuple[str, list[int]]] = []
    for line in text.splitlines():
        host, count = line.split()
        if not found or found[-1][0] != host:
            found.append((host, []))
        found[-1][1].append(int(count))
    return found


def counted_from_one(counts: list[int]) -> bool:
    return counts == list(range(1, len(counts) + 1))


async def test_logs_follow_a_moved_container_and_outlive_its_node(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol)
    container = await talker(client, user, n1.key)
    path = f"/api/v1/containers/{container['id']}/logs"

    async def counted(at_least: int, copies: int) -> list[tuple[str, list[int]]] | None:
        answer = await client.get(path, params={"tail": 10000}, headers=user.headers)
        assert answer.status_code == 200, answer.text
        seen = runs(answer.text)
        enough = len(seen) == copies and len(seen[-1][1]) >= at_least
        return seen if enough else None

    await eventually(lambda: counted(10, 1), timeout=30, interval=0.3)
    answer = await migrate(client, user, container, device=n2.key)
    assert answer.status_code == 202, answer.text
    migration = await ended(client, user, answer.json()["migration"])
    assert migration["state"] == "completed", migration

    # n2 answers with its own lines; n1's come from storage, in front of them.
    moved = await eventually(lambda: counted(10, 2), timeout=60, interval=0.5)
    (old_host, old_counts), (new_host, new_counts) = moved
    assert old_host != new_host
    assert len(old_counts) >= 10
    assert counted_from_one(old_counts)
    assert counted_from_one(new_counts)

    # n2 is gone: its agent killed, its WAN cut. Everything shipped is still there.
    testbed.bed.cut("n2", "wan")
    n2.process.signal(signal.SIGKILL)
    lines_shipped = len(new_counts)

    async def from_storage() -> list[tuple[str, list[int]]] | None:
        # Until the router drops n2's session, the call to it waits out its timeout.
        answer = await client.get(path, params={"tail": 10000}, headers=user.headers, timeout=40)
        if answer.status_code != 200:
            return None
        seen = runs(answer.text)
        hosts = [host for host, _ in seen]
        return seen if hosts and hosts[-1] == new_host else None

    # The node is noticed gone within the call timeout: then the lines come from storage.
    after = await eventually(from_storage, timeout=60, interval=1)
    by_host: dict[str, list[int]] = {}
    for host, counts in after:
        by_host.setdefault(host, []).extend(counts)
    assert set(by_host) == {old_host, new_host}
    assert counted_from_one(by_host[old_host])
    assert counted_from_one(by_host[new_host])
    # What n2 had not shipped yet when it died: a segment cut at most, and one in flight.
    assert len(by_host[new_host]) >= lines_shipped - 20
    assert after[0][0] == old_host


async def stored_counts(stack: Stack, user: Account, container_id: str) -> list[int]:
    """The counts storage holds of the container (its internal API, as the tenant)."""
    identity = Identity(user_id="probe", username=user.username, tenant_id=user.tenant_id)
    token = sign_identity(identity, secret=stack.internal_secret, audience="storage")
    async with httpx.AsyncClient(base_url=stack.url("storage"), timeout=10) as storage:
        answer = await storage.get(
            f"/v1/logs/{container_id}",
            params={"tail": 10000},
            headers={IDENTITY_HEADER: token},
        )
    assert answer.status_code == 200, answer.text
    return [int(line["text"].split()[1]) for line in answer.json()["lines"]]


async def test_logs_are_held_on_the_mesh_and_go_when_the_wan_is_back(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, _, user = await fusion_pair(testbed, stack, api, enrol)
    container_id = (await talker(client, user, n1.key))["id"]

    async def shipped(at_least: int) -> list[int] | None:
        counts = await stored_counts(stack, user, container_id)
        return counts if len(counts) >= at_least else None

    await eventually(lambda: shipped(10), timeout=30, interval=0.3)

    async def on(link: str) -> bool:
        answer = await api.get(f"/api/v1/devices/{n1.key}")
        return answer.status_code == 200 and answer.json()["link"] == link

    testbed.bed.cut("n1", "wan")
    try:
        await eventually(lambda: on("lowpan"), timeout=40, interval=0.2)
        await asyncio.sleep(3)  # what was on its way when the WAN went has landed or failed
        held_from = len(await stored_counts(stack, user, container_id))
        await asyncio.sleep(8)  # about 40 lines printed on the mesh
        assert len(await stored_counts(stack, user, container_id)) == held_from
    finally:
        testbed.bed.restore("n1", "wan")
    await eventually(lambda: on("wan"), timeout=60, interval=0.3)
    counts = await eventually(lambda: shipped(held_from + 40), timeout=60, interval=0.5)
    assert counted_from_one(counts)  # nothing lost on the mesh, nothing twice
