"""Exactly one copy: a node cut off past the loss window has its container restarted on a
peer; when it comes back it stops its own copy before it reports anything, and keeps its
/app and logs for the tenant. A duty-cycled node asleep past the window, as it announced,
is not moved at all."""

import asyncio
import io
import tarfile

import httpx
import pytest

from tests.conftest import eventually
from tests.support.testbed import TestbedFleet, reachable_stack_of_module
from tests.support.users import Account
from tests.testbed.test_migration import IMAGE, inspect, pair

pytestmark = pytest.mark.stack

# A cloud side of this module's own, with a short loss window (as tests/testbed/
# test_migration.py explains).
stack = reachable_stack_of_module

NODE_LOST_AFTER_S = 30
LOGGING_SERVE = [
    "sh",
    "-c",
    "echo serving-since-start; trap 'exit 0' TERM; while true; do sleep 0.2; done",
]
# Back soon after its links are: the test waits for the rejoin, not for a long backoff.
QUICK_RETURN = {"AGENT_RECONNECT_MAX_S": "2"}


@pytest.fixture(scope="module")
def testbed_stack_env() -> dict[str, str]:
    return {
        "MIGRATION_SCHEDULER_NODE_LOST_AFTER_S": str(NODE_LOST_AFTER_S),
        "MIGRATION_SCHEDULER_NODE_LOSS_CHECK_EVERY_S": "1",
    }


async def logging_container(client: httpx.AsyncClient, user: Account, key: str) -> dict:
    made = await client.post(
        "/api/v1/containers",
        json={
            "device": key,
            "name": "counter",
            "image": IMAGE,
            "command": LOGGING_SERVE,
            "limits": {"memory": 64 << 20, "pids": 64},
        },
        headers=user.headers,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    return made.json()


def running_on(testbed: TestbedFleet, nodes: list[str], name: str) -> list[str]:
    """The nodes where a container of that name runs."""
    return [
        node
        for node in nodes
        if (seen := inspect(testbed, node, name)) is not None and seen["State"]["Running"]
    ]


async def migration_of(client: httpx.AsyncClient, user: Account, container_id: str) -> dict | None:
    listed = await client.get("/api/v1/migrations", headers=user.headers)
    return next((m for m in listed.json()["items"] if m["container"] == container_id), None)


async def test_a_node_back_from_a_partition_runs_no_second_copy(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol, n1_env=QUICK_RETURN)
    container = await logging_container(client, user, n1.key)
    name, headers = container["name"], user.headers
    wrote = testbed.bed.docker("n1", "exec", name, "sh", "-c", "echo reading-42 > /app/state.txt")
    assert wrote.returncode == 0, wrote.stderr

    # n1 is cut off from the cloud and from its neighbours, but runs on.
    bed = testbed.bed
    links = bed.interfaces("n1")
    for link in links:
        bed.cut("n1", link)
    try:

        async def restarted() -> dict | None:
            return await migration_of(client, user, container["id"])

        migration = await eventually(restarted, timeout=NODE_LOST_AFTER_S + 90, interval=1)

        async def over() -> dict | None:
            found = await client.get(f"/api/v1/migrations/{migration['id']}", headers=headers)
            view = found.json()
            return view if view["state"] not in ("planning", "transferring") else None

        migration = await eventually(over, timeout=90, interval=0.5)
        assert migration["state"] == "cold_restarted", migration
        assert migration["target"] == n2.key
        # Both copies run now; only one of them knows it is the container.
        assert running_on(testbed, ["n1", "n2"], name) == ["n1", "n2"]
    finally:
        for link in links:
            bed.restore("n1", link)

    async def one_copy() -> bool:
        return running_on(testbed, ["n1", "n2"], name) == ["n2"]

    await eventually(one_copy, timeout=90, interval=0.5)
    old = inspect(testbed, "n1", name)
    assert old is not None
    assert old["NetworkSettings"]["Networks"] == {}  # cut from every network, then stopped

    async def back_online() -> bool:
        device = (await api.get(f"/api/v1/devices/{n1.key}")).json()
        return device["status"] == "online"

    await eventually(back_online, timeout=60, interval=0.5)
    await asyncio.sleep(3)  # n1's reports, inventory included, have reached the cloud
    assert running_on(testbed, ["n1", "n2"], name) == ["n2"]
    seen = (await client.get(f"/api/v1/containers/{container['id']}", headers=headers)).json()
    assert (seen["device"], seen["state"]) == (n2.key, "running")

    # The tenant is told, and reads the old copy's logs and /app.
    copies = await client.get(f"/api/v1/containers/{container['id']}/copies", headers=headers)
    assert copies.status_code == 200, copies.text
    [kept] = copies.json()
    assert (kept["device"], kept["state"], kept["generation"]) == (n1.key, "fenced", 1)
    assert n2.key in kept["reason"]
    logs = await client.get(
        f"/api/v1/containers/{container['id']}/logs", params={"copy": n1.key}, headers=headers
    )
    assert logs.status_code == 200, logs.text
    assert "serving-since-start" in logs.text
    copied = await client.post(
        f"/api/v1/containers/{container['id']}/files",
        params={"copy": n1.key},
        json={"path": "/app/state.txt"},
        headers=headers,
    )
    assert copied.status_code == 202, copied.text
    artifact_id = copied.json()["artifact"]

    async def complete() -> bool:
        found = await client.get(f"/api/v1/artifacts/{artifact_id}", headers=headers)
        return found.json()["state"] == "complete"

    await eventually(complete, timeout=60, interval=0.3)
    content = await client.get(f"/api/v1/artifacts/{artifact_id}/content", headers=headers)
    with tarfile.open(fileobj=io.BytesIO(content.content)) as tar:
        member = tar.extractfile("state.txt")
        assert member is not None
        assert member.read() == b"reading-42\n"
    # The container itself, on n2, was not touched by any of it.
    assert running_on(testbed, ["n1", "n2"], name) == ["n2"]

    # The tenant removes the old copy; the container runs on.
    removed = await client.delete(
        f"/api/v1/containers/{container['id']}/copies/{n1.key}", headers=headers
    )
    assert removed.status_code == 202, removed.text

    async def gone() -> bool:
        listed = await client.get(f"/api/v1/containers/{container['id']}/copies", headers=headers)
        return inspect(testbed, "n1", name) is None and listed.json()[0]["state"] == "removed"

    await eventually(gone, timeout=60, interval=0.5)
    seen = (await client.get(f"/api/v1/containers/{container['id']}", headers=headers)).json()
    assert (seen["device"], seen["state"]) == (n2.key, "running")


async def test_a_node_asleep_past_the_window_as_announced_is_not_moved(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    """n1 sleeps longer than the loss window, having announced when it wakes; its
    neighbours cannot reach its broker meanwhile (its radio is off), so only the announced
    contact tells the scheduler it is asleep, not lost."""
    asleep_s = NODE_LOST_AFTER_S + 40
    duty = {"AGENT_DUTY_CYCLE_AWAKE_S": "25", "AGENT_DUTY_CYCLE_ASLEEP_S": str(asleep_s)}
    n1, n2, user = await pair(testbed, stack, api, enrol, n1_env=duty)
    container = await logging_container(client, user, n1.key)
    bed = testbed.bed
    # Nothing reaches n1's broker from outside while it is asleep (or awake: the rule
    # stays for the whole test, it only withholds the neighbours' evidence).
    radio_off = ["INPUT", "-i", bed.interface("n1", "wan"), "-p", "tcp", "--dport", "1883",
                 "-j", "DROP"]  # fmt: skip
    added = bed.exec("n1", ["iptables", "-I", *radio_off])
    assert added.returncode == 0, added.stderr
    try:

        async def asleep() -> dict | None:
            device = (await api.get(f"/api/v1/devices/{n1.key}")).json()
            return device if device["status"] == "offline" else None

        device = await eventually(asleep, timeout=60, interval=0.3)
        assert device["next_contact_at"] is not None
        # Silent past the loss window, with a margin for the watchdog's rounds, still
        # before its announced contact.
        await asyncio.sleep(NODE_LOST_AFTER_S + 10)
        still = (await api.get(f"/api/v1/devices/{n1.key}")).json()
        assert still["status"] == "offline"
        assert n1.key not in (await api.get(f"/api/v1/devices/{n2.key}")).json()["neighbours"]
        assert await migration_of(client, user, container["id"]) is None
        assert inspect(testbed, "n2", container["name"]) is None

        async def awake_again() -> bool:
            device = (await api.get(f"/api/v1/devices/{n1.key}")).json()
            return device["status"] == "online"

        await eventually(awake_again, timeout=asleep_s + 30, interval=0.5)
        # Its join asked which copies are its own: this one is, and runs on.
        await asyncio.sleep(2)
        assert running_on(testbed, ["n1", "n2"], container["name"]) == ["n1"]
        seen = await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)
        assert (seen.json()["device"], seen.json()["state"]) == (n1.key, "running")
    finally:
        bed.exec("n1", ["iptables", "-D", *radio_off])
