"""A tenant cannot take a shared node for itself: every container has limits (defaults when
none are asked, maxima the node's own size), a tenant's containers on one node reserve at
most its share of the node's memory, CPUs and PIDs (``ORCHESTRATOR_TENANT_NODE_*_SHARE``,
half of each by default; tests/orchestrator/test_node_fit.py checks each), and a fork bomb
or a memory hog stays inside its container while another tenant's keeps answering."""

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ONE_DATABASE
from tests.integration.test_gateway_api import assert_problem
from tests.security.probe_nodes import offline_device
from tests.security.test_container_policy import assert_hardened, exec_in, inspect
from tests.security.test_injection import tenant_containers
from tests.support.users import Account, register

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
MIB = 1 << 20


async def create(
    client: httpx.AsyncClient, user: Account, key: str, name: str, **body: object
) -> httpx.Response:
    return await client.post(
        "/api/v1/containers",
        json={"device": key, "name": name, "image": IMAGE, "command": ["sleep", "600"], **body},
        headers=user.headers,
        timeout=60,
    )


@ONE_DATABASE
async def test_limits_beyond_the_node_or_the_tenants_share_are_refused(
    api, client, node, neighbours
) -> None:
    agent, user = node
    device = (await api.get(f"/api/v1/devices/{agent.key}")).json()
    total, cpus = device["memory_total"], device["cpu_count"]

    for limits, limit in (({"memory": total + MIB}, "memory"), ({"cpus": cpus + 1}, "cpus")):
        refused = assert_problem(
            await create(client, user, agent.key, "huge", limits=limits), 422, "exceeds_device"
        )
        assert refused["limit"] == limit
    # Nothing recorded, nothing sent to the node.
    listed = await client.get("/api/v1/containers", headers=user.headers)
    assert listed.json()["items"] == []
    assert tenant_containers(user) == []

    # Each within the tenant's half of the node, but two of them together would be more.
    big = (total * 3 // 10) // MIB * MIB
    first = await create(client, user, agent.key, "big-1", limits={"memory": big})
    assert first.status_code == 201, first.text
    assert_hardened(inspect(first.json()["name"]), memory=big, cpus=1.0, pids=256)
    second = assert_problem(
        await create(client, user, agent.key, "big-2", limits={"memory": big}),
        403,
        "node_share_exceeded",
    )
    assert (second["resource"], second["reserved"], second["asked"]) == ("memory", big, big)
    assert second["allowed"] == total // 2
    assert [c["name"] for c in (await client.get("/api/v1/containers", headers=user.headers))
            .json()["items"]] == [first.json()["name"]]  # fmt: skip
    assert len(tenant_containers(user)) == 1

    # The share is per tenant: another tenant still gets its own on the same node.
    other = await neighbours(agent.key)
    theirs = await create(client, other, agent.key, "big", limits={"memory": big})
    assert theirs.status_code == 201, theirs.text
    # And a removed container gives its share back.
    gone = await client.delete(f"/api/v1/containers/{first.json()['id']}", headers=user.headers)
    assert gone.status_code == 204, gone.text
    again = await create(client, user, agent.key, "big-2", limits={"memory": big})
    assert again.status_code == 201, again.text


@ONE_DATABASE
async def test_a_fork_bomb_and_a_memory_hog_stay_in_their_container(
    client, node, neighbours
) -> None:
    agent, user = node
    limits = {"memory": 16 * MIB, "cpus": 0.2, "pids": 32}
    bomber = (await create(client, user, agent.key, "bomber", limits=limits)).json()
    other = await neighbours(agent.key)
    made = await create(client, other, agent.key, "bystander")
    assert made.status_code == 201, made.text
    bystander = made.json()

    # A memory hog is killed by its own limit (137: SIGKILL from the OOM killer).
    hog = await exec_in(client, user, bomber["id"], "tail /dev/zero; echo hog=$?")
    assert "hog=137" in hog["output"], hog

    pids = cgroup("pids", inspect(bomber["name"]))
    assert (pids / "pids.max").read_text().strip() == str(limits["pids"])
    # A fork bomb, then processes that stay: busybox's shell gives up at the first fork the
    # kernel refuses, and leaves its container full.
    bomb = await exec_in(
        client, user, bomber["id"], "b() { b & b; }; b; while :; do sleep 300 & done"
    )
    assert "can't fork" in bomb["output"], bomb
    assert await refused_forks(pids)  # refused by the kernel at the container's limit
    full = int((pids / "pids.current").read_text())
    assert limits["pids"] - 4 <= full <= limits["pids"]
    # The node and the other tenant do not notice: its container answers, promptly.
    started = time.monotonic()
    alive = await exec_in(client, other, bystander["id"], "echo alive")
    assert (alive["exit_code"], alive["output"]) == (0, "alive\n")
    assert time.monotonic() - started < 20  # generous: proves "does not hang"
    assert int((pids / "pids.current").read_text()) >= full - 2  # still full meanwhile
    assert inspect(bystander["name"])["State"]["Running"] is True


def cgroup(controller: str, seen: dict) -> Path:
    """The container's cgroup (v1, Docker's cgroupfs driver: this machine's engine), inside
    its tenant's."""
    parent = seen["HostConfig"]["CgroupParent"].strip("/")
    assert parent.startswith("edgecloud-tenant-"), seen["HostConfig"]["CgroupParent"]
    found = Path("/sys/fs/cgroup") / controller / parent / seen["Id"]
    assert found.is_dir(), f"no {controller} cgroup at {found}"
    return found


async def refused_forks(pids: Path) -> bool:
    events = dict(line.split() for line in (pids / "pids.events").read_text().splitlines())
    return int(events.get("max", "0")) > 0


async def test_creates_racing_for_the_last_places_never_pass_the_quota(stack, api, enrol) -> None:
    """Many creates at once, from one tenant and on the same node: exactly as many are
    accepted as the quota has places left, in a single replica or several."""
    user = await register(stack)
    key = await offline_device(stack, api, await enrol(), tenant_id=user.tenant_id)
    quota = await api.patch(f"/api/v1/tenants/{user.tenant_id}/quotas", json={"containers": 3})
    assert quota.status_code == 200, quota.text
    # The node is offline: each accepted create waits with its command queued (202).
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        answers = await asyncio.gather(
            # Small enough for all of them to fit the tenant's share of the node's CPUs.
            *(
                create(client, user, key, f"racer{number}", limits={"cpus": 0.25})
                for number in range(12)
            )
        )
        listed = await client.get("/api/v1/containers", headers=user.headers)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] * 3 + [403] * 9, [answer.text for answer in answers]
    for answer in answers:
        if answer.status_code == 403:
            assert answer.json()["code"] == "quota_exceeded"
    assert len(listed.json()["items"]) == 3
