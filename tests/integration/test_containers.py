"""Containers through the public API, on a real agent and Docker engine."""

import asyncio
import json
import os
import signal
import uuid

import httpx
import pytest

from edgecloud_contracts import uris
from edgecloud_contracts.containers import Action, Command, ContainerSpec
from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import docker, online
from tests.integration.test_gateway_api import assert_problem
from tests.support.agents import AgentFactory, AgentHandle
from tests.support.beats import heartbeat
from tests.support.users import Account, register
from tests.support.wamp import device_session, probe_key, service_session

pytestmark = pytest.mark.stack

# What the node and the gateway's validation do runs once, to keep the suite's time; what the
# cloud records (states, queues, delivery once, tenants, quotas, placement) on both databases.

IMAGE = "edgecloud/busybox:latest"
REGISTRY_IMAGE = "127.0.0.1:5000/edgecloud/busybox:1.0"


def inspect(name: str) -> dict | None:
    done = docker("inspect", name)
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def containers_named(name: str) -> list[str]:
    return [n for n in docker("ps", "-a", "--format", "{{.Names}}").stdout.split() if n == name]


async def create(client: httpx.AsyncClient, user: Account, **body) -> httpx.Response:
    return await client.post("/api/v1/containers", json=body, headers=user.headers)


async def test_created_container_runs_hardened_with_its_exact_name(client, node) -> None:
    agent, user = node
    answer = await create(
        client,
        user,
        device=agent.key,
        name="web",
        image=IMAGE,
        command=["sleep", "600"],
        env={"GREETING": "hello world"},
        limits={"memory": 64 << 20, "cpus": 0.5, "pids": 64},
    )
    assert answer.status_code == 201, answer.text
    container = answer.json()
    assert container["name"] == f"{user.username}-web"
    assert container["state"] == "running"
    assert container["owner"] == user.username

    seen = inspect(container["name"])
    assert seen is not None
    host = seen["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == host["MemorySwap"] == 64 << 20
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert not host.get("Binds")
    # Only its own application volume: nothing of the host.
    assert [(m["Type"], m["Destination"]) for m in seen["Mounts"]] == [("volume", "/app")]
    assert host["NetworkMode"] != "host"
    labels = seen["Config"]["Labels"]
    assert labels["edgecloud.container_id"] == container["id"]
    assert labels["edgecloud.tenant"] == user.tenant_id
    assert labels["edgecloud.owner"] == user.username
    assert "GREETING=hello world" in seen["Config"]["Env"]
    assert seen["State"]["Running"] is True

    listed = (await client.get("/api/v1/containers", headers=user.headers)).json()["items"]
    assert [c["id"] for c in listed] == [container["id"]]
    live = (
        await client.get(
            f"/api/v1/containers/{container['id']}", params={"live": "true"}, headers=user.headers
        )
    ).json()
    assert live["state"] == "running"


async def test_lifecycle_through_the_api(client, node) -> None:
    agent, user = node
    container = (
        await create(
            client, user, device=agent.key, name="life", image=IMAGE, command=["sleep", "600"]
        )
    ).json()
    path = f"/api/v1/containers/{container['id']}"
    stopped = await client.post(f"{path}/stop", headers=user.headers)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "exited"
    assert inspect(container["name"])["State"]["Running"] is False
    started = await client.post(f"{path}/start", headers=user.headers)
    assert started.json()["state"] == "running"
    restarted = await client.post(f"{path}/restart", headers=user.headers)
    assert restarted.json()["state"] == "running"
    assert (await client.delete(path, headers=user.headers)).status_code == 204
    assert inspect(container["name"]) is None
    assert_problem(await client.get(path, headers=user.headers), 404, "container_not_found")

    actions = [
        e["action"]
        for e in (await client.get("/api/v1/audit", headers=user.headers)).json()["items"]
    ]
    for action in (
        "container.create",
        "container.stop",
        "container.start",
        "container.restart",
        "container.remove",
    ):
        assert action in actions


# The gateway's pool holds 20 connections: more requests than that wait on the node here.
@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
async def test_requests_waiting_on_a_frozen_node_leave_the_gateway_serving(client, node) -> None:
    agent, user = node
    made = await create(
        client, user, device=agent.key, name="frozen", image=IMAGE, command=["sleep", "600"]
    )
    assert made.status_code == 201, made.text
    path = f"/api/v1/containers/{made.json()['id']}"
    agent.process.signal(signal.SIGSTOP)  # its session stays open; it answers nothing
    try:
        waiting = [
            asyncio.create_task(
                client.get(path, params={"live": "true"}, headers=user.headers, timeout=60)
            )
            for _ in range(40)
        ]
        await asyncio.sleep(1)  # all of them are in the gateway, waiting on the node
        listed = await client.get("/api/v1/containers", headers=user.headers)
        assert listed.status_code == 200, listed.text
        # Answered while every request to the frozen node still waited for it.
        assert not any(task.done() for task in waiting)
    finally:
        agent.process.signal(signal.SIGCONT)
    answers = await asyncio.gather(*waiting)
    assert {answer.status_code for answer in answers} <= {200, 502, 504}


async def test_another_tenant_cannot_see_or_touch_it(stack, client, node) -> None:
    agent, user = node
    container = (
        await create(
            client, user, device=agent.key, name="mine", image=IMAGE, command=["sleep", "600"]
        )
    ).json()
    stranger = await register(stack)
    path = f"/api/v1/containers/{container['id']}"
    assert_problem(await client.get(path, headers=stranger.headers), 404, "container_not_found")
    assert_problem(
        await client.post(f"{path}/stop", headers=stranger.headers), 404, "container_not_found"
    )
    assert_problem(await client.delete(path, headers=stranger.headers), 404, "container_not_found")
    assert (await client.get("/api/v1/containers", headers=stranger.headers)).json()["items"] == []
    # Nor can it place anything on a device it was not granted.
    refused = await create(client, stranger, device=agent.key, name="intruder", image=IMAGE)
    assert_problem(refused, 404, "device_not_found")
    assert inspect(container["name"])["State"]["Running"] is True


@ONE_DATABASE
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a;rm -rf /"}, "name"),
        ({"name": "../etc"}, "name"),
        ({"name": "x" * 200}, "name"),
        ({"image": "--privileged"}, "image"),
        ({"image": "busybox --privileged"}, "image"),
        ({"env": {"A": "line\nbreak"}}, "env.A"),
        ({"env": {"BAD NAME": "x"}}, "env"),
        ({"limits": {"memory": 1}}, "limits.memory"),
        ({"limits": {"cpus": 1000}}, "limits.cpus"),
        ({"limits": {"pids": 0}}, "limits.pids"),
        ({"privileged": True}, "privileged"),
    ],
)
async def test_invalid_requests_change_nothing(client, node, body, field) -> None:
    agent, user = node
    request = {"device": agent.key, "name": "ok", "image": IMAGE, **body}
    problem = assert_problem(await create(client, user, **request), 422, "validation_failed")
    assert field in problem["fields"]
    assert (await client.get("/api/v1/containers", headers=user.headers)).json()["items"] == []
    assert not docker(
        "ps", "-aq", "--filter", f"label=edgecloud.tenant={user.tenant_id}"
    ).stdout.strip()


async def test_unknown_device_missing_fields_and_quota(api, client, node) -> None:
    agent, user = node
    assert_problem(
        await create(client, user, device="no_such_device_000000", name="x", image=IMAGE),
        404,
        "device_not_found",
    )
    missing = assert_problem(
        await create(client, user, device=agent.key, image=IMAGE), 422, "validation_failed"
    )
    assert missing["fields"] == ["name"]
    neither = assert_problem(
        await create(client, user, name="x", image=IMAGE), 422, "validation_failed"
    )
    assert "device or placement" in neither["detail"]

    await api.patch(f"/api/v1/tenants/{user.tenant_id}/quotas", json={"containers": 1})
    user.token = (
        await client.post(
            "/api/v1/auth/login", json={"username": user.username, "password": user.password}
        )
    ).json()["access_token"]
    first = await create(
        client, user, device=agent.key, name="one", image=IMAGE, command=["sleep", "600"]
    )
    assert first.status_code == 201, first.text
    assert_problem(
        await create(client, user, device=agent.key, name="two", image=IMAGE), 403, "quota_exceeded"
    )
    assert_problem(
        await create(client, user, device=agent.key, name="one", image=IMAGE), 403, "quota_exceeded"
    )


async def test_placement_picks_a_matching_device(client, node) -> None:
    agent, user = node
    placed = await create(
        client,
        user,
        placement={"location": "TEST BENCH"},
        name="placed",
        image=IMAGE,
        command=["sleep", "600"],
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["device"] == agent.key
    nowhere = await create(
        client, user, placement={"location": "the moon"}, name="lost", image=IMAGE
    )
    assert_problem(nowhere, 409, "no_matching_device")


@ONE_DATABASE
async def test_image_is_pulled_when_missing(client, node) -> None:
    agent, user = node
    docker("rmi", "-f", REGISTRY_IMAGE)
    answer = await create(
        client,
        user,
        device=agent.key,
        name="pulled",
        image=REGISTRY_IMAGE,
        command=["sleep", "600"],
    )
    assert answer.status_code == 201, answer.text
    # Made from the ID the pull gave, whatever the tag does next.
    seen = inspect(answer.json()["name"])
    pulled = docker("image", "inspect", "-f", "{{.Id}}", REGISTRY_IMAGE).stdout.strip()
    assert seen["Config"]["Image"] == pulled
    assert seen["Config"]["Labels"]["edgecloud.image"] == REGISTRY_IMAGE
    assert answer.json()["image"] == REGISTRY_IMAGE
    broken = await create(
        client, user, device=agent.key, name="broken", image="127.0.0.1:5000/edgecloud/nothing:0"
    )
    problem = assert_problem(broken, 422, "image_pull_failed")
    assert problem["command"]
    assert not containers_named(f"{user.username}-broken")


async def test_offline_device_queues_and_runs_once_when_back(
    client, api, agents: AgentFactory, node
) -> None:
    agent, user = node
    agent.process.signal(signal.SIGTERM)
    agent.process.wait(timeout=10)
    await eventually(lambda: _status(api, agent.key, "offline"), timeout=5)

    queued = await create(
        client, user, device=agent.key, name="later", image=IMAGE, command=["sleep", "600"]
    )
    assert queued.status_code == 202, queued.text
    waiting = queued.json()
    assert waiting["state"] == "pending"
    command = (
        await client.get(f"/api/v1/commands/{waiting['command']}", headers=user.headers)
    ).json()
    assert command["state"] == "queued"
    assert not containers_named(waiting["name"])

    back = _restart(agents, agent)
    await eventually(lambda: online(api, back.key), timeout=20)

    async def done() -> dict | None:
        answer = (
            await client.get(f"/api/v1/commands/{waiting['command']}", headers=user.headers)
        ).json()
        return answer if answer["state"] == "succeeded" else None

    finished = await eventually(done, timeout=20)
    assert finished["attempts"] >= 1
    assert containers_named(waiting["name"]) == [waiting["name"]]
    seen = (await client.get(f"/api/v1/containers/{waiting['id']}", headers=user.headers)).json()
    assert seen["state"] == "running"
    assert seen["command"] is None


async def test_agent_killed_during_a_create_converges_to_one_container(
    client, api, agents: AgentFactory, node
) -> None:
    agent, user = node
    docker("rmi", "-f", REGISTRY_IMAGE)  # a pull makes the create take a while
    request = asyncio.create_task(
        create(
            client,
            user,
            device=agent.key,
            name="crash",
            image=REGISTRY_IMAGE,
            command=["sleep", "600"],
        )
    )
    await asyncio.sleep(0.3)
    agent.process.signal(signal.SIGKILL)
    answer = await request
    assert answer.status_code in (201, 202), answer.text
    body = answer.json()
    back = _restart(agents, agent)
    await eventually(lambda: online(api, back.key), timeout=20)

    async def running() -> bool:
        seen = (await client.get(f"/api/v1/containers/{body['id']}", headers=user.headers)).json()
        return seen["state"] == "running"

    await eventually(running, timeout=30)
    assert containers_named(f"{user.username}-crash") == [f"{user.username}-crash"]


async def test_repeated_delivery_is_applied_once(stack, node) -> None:
    agent, user = node
    container_id = str(uuid.uuid4())
    name = f"{user.username}-twice"
    spec = ContainerSpec(
        container_id=container_id,
        docker_name=name,
        image=IMAGE,
        command=["sleep", "600"],
        tenant_id=user.tenant_id,
        owner=user.username,
    )
    command = Command(
        id=str(uuid.uuid4()),
        action=Action.CREATE,
        container_id=container_id,
        docker_name=name,
        spec=spec,
    )
    procedure = uris.device_procedure(agent.key, uris.container_operation("create"))
    async with service_session(stack, service="orchestrator") as link:
        await link.wait_joined(10)
        # The reply of the first delivery is "lost": the same command is sent again, twice at once.
        first = await link.call(procedure, command.model_dump(mode="json"), timeout=60)
        again = await asyncio.gather(
            *(link.call(procedure, command.model_dump(mode="json"), timeout=60) for _ in range(2))
        )
    assert first["ok"] is True
    assert all(a["ok"] and a["replayed"] for a in again)
    assert {a["container"]["docker_id"] for a in again} == {first["container"]["docker_id"]}
    assert containers_named(name) == [name]


async def test_events_reach_the_owning_tenant_only(stack, client, node) -> None:
    agent, user = node
    stranger = await register(stack)

    async def collect(account: Account, into: list[str]) -> None:
        async with client.stream(
            "GET", "/api/v1/events", headers=account.headers, timeout=30
        ) as stream:
            async for line in stream.aiter_lines():
                into.append(line)

    mine: list[str] = []
    theirs: list[str] = []
    readers = [
        asyncio.create_task(collect(user, mine)),
        asyncio.create_task(collect(stranger, theirs)),
    ]
    try:
        await eventually(lambda: _ready(mine, theirs), timeout=5)
        created = (
            await create(
                client,
                user,
                device=agent.key,
                name="evented",
                image=IMAGE,
                command=["sleep", "600"],
            )
        ).json()

        async def seen() -> bool:
            return any(created["id"] in line for line in mine if line.startswith("data:")) and any(
                line == "event: command" for line in mine
            )

        await eventually(seen, timeout=10)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert not any(created["id"] in line for line in theirs)
    assert "event: container.status" in mine


@ONE_DATABASE
async def test_an_images_platforms_are_read_from_the_trusted_registry(stack, client) -> None:
    user = await register(stack)

    async def platforms(image: str) -> httpx.Response:
        return await client.get(
            "/api/v1/images/platforms", params={"image": image}, headers=user.headers
        )

    known = await platforms(REGISTRY_IMAGE)
    assert known.status_code == 200, known.text
    assert known.json() == {"image": REGISTRY_IMAGE, "platforms": ["amd64"]}
    # Outside the trusted registries, or not there: unknown, and the node decides.
    assert (await platforms(IMAGE)).json()["platforms"] is None
    assert (await platforms("127.0.0.1:5000/edgecloud/missing:1")).json()["platforms"] is None
    assert_problem(await platforms("Not An Image"), 422, "validation_failed")
    anonymous = await client.get("/api/v1/images/platforms", params={"image": IMAGE})
    assert anonymous.status_code == 401


async def test_image_built_for_another_architecture_is_refused(stack, client, api, enrol) -> None:
    user = await register(stack)
    key = probe_key()
    async with device_session(stack, key=key, token=await enrol()) as uplink:
        await uplink.call("edge.registry.heartbeat", heartbeat(key), timeout=5)  # an aarch64 node
        await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": user.tenant_id})
        refused = await create(client, user, device=key, name="wrong-arch", image=REGISTRY_IMAGE)
        problem = assert_problem(refused, 422, "arch_mismatch")
        assert problem["platforms"] == ["amd64"]
        nowhere = await create(
            client, user, placement={"arch": "aarch64"}, name="nowhere", image=REGISTRY_IMAGE
        )
        assert_problem(nowhere, 409, "no_matching_device")
    assert (await client.get("/api/v1/containers", headers=user.headers)).json()["items"] == []


async def test_containers_keep_running_while_the_cloud_is_unreachable(
    stack, client, api, node
) -> None:
    agent, user = node
    created = (
        await create(
            client, user, device=agent.key, name="autonomous", image=IMAGE, command=["sleep", "600"]
        )
    ).json()

    # With no cloud at all, a crashed container is brought back by its restart policy.
    # (`docker kill` would count as a deliberate stop: kill its process from the host.)
    async def crash_and_recover() -> None:
        os.kill(inspect(created["name"])["State"]["Pid"], signal.SIGKILL)

        async def restarted() -> bool:
            seen = inspect(created["name"])
            return seen is not None and seen["State"]["Running"] and seen["RestartCount"] >= 1

        await eventually(restarted, timeout=20)

    # The restart blocks (it waits for processes), so it runs beside this test's loop.
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: stack.restart_router(while_down=lambda: asyncio.run(crash_and_recover()))
    )
    await eventually(lambda: online(api, agent.key), timeout=30)

    async def caught_up() -> bool:
        seen = (
            await client.get(f"/api/v1/containers/{created['id']}", headers=user.headers)
        ).json()
        return seen["state"] == "running" and seen["error"] is None

    await eventually(caught_up, timeout=20)
    assert containers_named(created["name"]) == [created["name"]]


async def test_drift_between_cloud_and_node_is_flagged(stack, client, node) -> None:
    agent, user = node
    created = (
        await create(
            client, user, device=agent.key, name="drift", image=IMAGE, command=["sleep", "600"]
        )
    ).json()
    # Removed behind the platform's back: the cloud flags it instead of forgetting it.
    docker("rm", "-f", created["name"])

    async def missing() -> dict | None:
        seen = (
            await client.get(f"/api/v1/containers/{created['id']}", headers=user.headers)
        ).json()
        return seen if seen["state"] == "missing" else None

    flagged = await eventually(missing, timeout=15)
    assert "not found on the node" in flagged["error"]

    # A container made by edgecloud that the cloud has no record of is an orphan.
    orphan = f"orphan-{uuid.uuid4().hex[:8]}"
    labels = [
        "--label",
        "edgecloud.managed=true",
        "--label",
        f"edgecloud.container_id={uuid.uuid4()}",
    ]
    made = docker(
        "run", "-d", "--name", orphan, "--network", "none", *labels, IMAGE, "sleep", "600"
    )
    assert made.returncode == 0, made.stderr
    try:

        async def counted() -> bool:
            metrics = (await client.get(f"{stack.url('orchestrator')}/metrics")).text
            return f'edgecloud_orphan_containers{{device="{agent.key}"}} 1.0' in metrics

        await eventually(counted, timeout=15)
    finally:
        docker("rm", "-f", orphan)


async def _ready(*streams: list[str]) -> bool:
    return all(any(line.startswith(": connected") for line in s) for s in streams)


async def _status(api: httpx.AsyncClient, key: str, wanted: str) -> bool:
    answer = await api.get(f"/api/v1/devices/{key}")
    return answer.status_code == 200 and answer.json()["status"] == wanted


def _restart(agents: AgentFactory, agent: AgentHandle) -> AgentHandle:
    return agents.start(
        token=None, hostname=agent.hostname, mac=agent.mac, state_dir=agent.state_dir
    )
