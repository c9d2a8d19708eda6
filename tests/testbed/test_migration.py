"""Peer migration across the testbed: a container moves from n1 to n2, the two agents
talking MQTT through n2's broker, each node with its own Docker engine."""

import asyncio
import json
import os
import secrets
import signal
import subprocess

import httpx
import pytest

from tests.conftest import eventually
from tests.support.agents import AgentHandle
from tests.support.images import build_context
from tests.support.sensors import (
    CONSUMER,
    SENSOR_TOPIC,
    HandledLog,
    grant_sensor,
    publish_sequence,
    sensor_login,
)
from tests.support.stack import Stack
from tests.support.testbed import TestbedFleet, reachable_stack_of_module
from tests.support.users import Account, register

pytestmark = pytest.mark.stack

# A cloud side of this module's own: the node-loss test must not see other modules' nodes,
# which all fell silent together when their testbed was torn down (an outage, to the
# scheduler, which then rightly moves nothing).
stack = reachable_stack_of_module

NODE_LOST_AFTER_S = 30


@pytest.fixture(scope="module")
def testbed_stack_env() -> dict[str, str]:
    """A node loss window of 30 s instead of 90 s, checked every second instead of every 5
    (what counts as lost is tested in tests/migration_scheduler and, on a real stack, in
    tests/integration/test_control_plane_pauses.py; here the cold restart across nodes).
    Still well past the longest any node of this module is silent while the other runs
    (a test with one node, a peer killed mid-transfer and the next test's start: < 20 s),
    so only the test that loses a node loses one."""
    return {
        "MIGRATION_SCHEDULER_NODE_LOST_AFTER_S": str(NODE_LOST_AFTER_S),
        "MIGRATION_SCHEDULER_NODE_LOSS_CHECK_EVERY_S": "1",
    }


IMAGE = "edgecloud/busybox:latest"
SERVE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
STEPS = ["select_peer", "resource_request", "configuration", "dependencies", "activation"]
# Fields of the engine's HostConfig that make the hardening (ARCHITECTURE 5).
HARDENING = (
    "Privileged",
    "CapDrop",
    "CapAdd",
    "SecurityOpt",
    "ReadonlyRootfs",
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "PidsLimit",
    "NetworkMode",
    "Binds",
    "Devices",
    "Tmpfs",
)


AGENT_ENV = {"AGENT_STOP_TIMEOUT_S": "2"}


async def pair(
    testbed: TestbedFleet,
    stack: Stack,
    api: httpx.AsyncClient,
    enrol,
    n1_env: dict[str, str] | None = None,
    *,
    nodes: tuple[str, str] = ("n1", "n2"),
) -> tuple[AgentHandle, AgentHandle, Account]:
    """The source and the target (n1 and n2 unless ``nodes`` says otherwise) online, both
    granted to a new tenant, the source knowing the target's round trip. ``n1_env``: the
    source's own settings."""
    source_node, target_node = nodes
    source = testbed.start_agent(source_node, token=await enrol(), env=AGENT_ENV | (n1_env or {}))
    target = testbed.start_agent(target_node, token=await enrol(), env=AGENT_ENV)
    await measuring(api, source, target)
    user = await register(stack)
    for agent in (source, target):
        granted = await api.post(
            f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id}
        )
        assert granted.status_code == 201, granted.text
    return source, target, user


async def measuring(api: httpx.AsyncClient, source: AgentHandle, target: AgentHandle) -> None:
    """Until ``source`` is online and has measured ``target`` (the registry names the peers
    in its answer to a heartbeat; the agents measure them)."""

    async def measured() -> bool:
        answer = await api.get(f"/api/v1/devices/{source.key}")
        if answer.status_code != 200:
            return False
        device = answer.json()
        return device["status"] == "online" and target.key in device["neighbours"]

    await eventually(measured, timeout=60, interval=0.3)


async def make_container(client: httpx.AsyncClient, user: Account, key: str, name: str) -> dict:
    made = await client.post(
        "/api/v1/containers",
        json={
            "device": key,
            "name": name,
            "image": IMAGE,
            "command": SERVE,
            # No CPU share asked: the testbed's nodes all read the one host's CPU load.
            "limits": {"memory": 64 << 20, "pids": 64},
        },
        headers=user.headers,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    return made.json()


async def migrate(
    client: httpx.AsyncClient, user: Account, container: dict, **body: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/containers/{container['id']}/migrate", json=body, headers=user.headers
    )


async def ended(client: httpx.AsyncClient, user: Account, migration_id: str) -> dict:
    async def done() -> dict | None:
        found = await client.get(f"/api/v1/migrations/{migration_id}", headers=user.headers)
        assert found.status_code == 200, found.text
        view = found.json()
        running = ("requested", "planning", "transferring", "activating")
        return None if view["state"] in running else view

    return await eventually(done, timeout=120, interval=0.2)


def inspect(testbed: TestbedFleet, node: str, name: str) -> dict | None:
    done = testbed.bed.docker(node, "inspect", name)
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def hardening(seen: dict) -> dict:
    return {field: seen["HostConfig"].get(field) for field in HARDENING}


async def test_a_container_moves_to_the_peer_with_its_hardening_and_data(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol)
    container = await make_container(client, user, n1.key, "mover")
    name = container["name"]
    wrote = testbed.bed.docker("n1", "exec", name, "sh", "-c", "echo reading-42 > /app/state.txt")
    assert wrote.returncode == 0, wrote.stderr
    before = inspect(testbed, "n1", name)
    assert before is not None

    answer = await migrate(client, user, container, device=n2.key)
    assert answer.status_code == 202, answer.text
    migration = await ended(client, user, answer.json()["migration"])

    assert migration["state"] == "completed", migration
    assert (migration["source"], migration["target"]) == (n1.key, n2.key)
    assert migration["reason"] == "manual"
    names = [step["name"] for step in migration["steps"]]
    for step in STEPS:
        assert step in names, names
    assert all(step["duration_ms"] is not None for step in migration["steps"])
    assert migration["freeze_ms"] is not None

    # The record follows the container; the peer runs it as hardened as the source did.
    moved = (await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)).json()
    assert moved["device"] == n2.key
    after = inspect(testbed, "n2", name)
    assert after is not None
    assert after["State"]["Running"] is True
    assert hardening(after) == hardening(before)
    # The same labels, but for its placement: the copy on the peer is the next one.
    generation = "edgecloud.generation"
    assert before["Config"]["Labels"].pop(generation) == "1"
    assert after["Config"]["Labels"].pop(generation) == "2"
    assert after["Config"]["Labels"] == before["Config"]["Labels"]
    assert inspect(testbed, "n1", name) is None
    state = testbed.bed.docker("n2", "exec", name, "cat", "/app/state.txt")
    assert state.stdout.strip() == "reading-42"

    # Commands now go to the peer.
    stopped = await client.post(
        f"/api/v1/containers/{container['id']}/stop", headers=user.headers, timeout=30
    )
    assert stopped.status_code == 200, stopped.text
    assert inspect(testbed, "n2", name)["State"]["Running"] is False

    listed = (await client.get("/api/v1/migrations", headers=user.headers)).json()["items"]
    assert [m["id"] for m in listed] == [migration["id"]]


async def test_the_image_goes_along_when_the_peer_lacks_it(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol)
    container = await make_container(client, user, n1.key, "carried")
    testbed.bed.docker("n2", "rmi", "-f", IMAGE)
    try:
        answer = await migrate(client, user, container)  # the scheduler picks: n2 only
        assert answer.status_code == 202, answer.text
        migration = await ended(client, user, answer.json()["migration"])
        assert migration["state"] == "completed", migration
        assert migration["target"] == n2.key
        assert inspect(testbed, "n2", container["name"])["State"]["Running"] is True
    finally:
        testbed.bed.load_images("n2")


async def test_no_peer_refuses_and_changes_nothing(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1 = testbed.start_agent("n1", token=await enrol())

    async def online() -> bool:
        answer = await api.get(f"/api/v1/devices/{n1.key}")
        return answer.status_code == 200 and answer.json()["status"] == "online"

    await eventually(online, timeout=40, interval=0.3)
    user = await register(stack)
    granted = await api.post(f"/api/v1/devices/{n1.key}/grants", json={"tenant": user.tenant_id})
    assert granted.status_code == 201
    container = await make_container(client, user, n1.key, "stays")

    refused = await migrate(client, user, container)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["code"] == "no_suitable_peer"
    failed = await ended(client, user, problem["migration"])
    assert failed["state"] == "failed"
    assert failed["error_code"] == "no_suitable_peer"

    # A device of another tenant, or the source itself, is not a place to go.
    for device in (n1.key, "someone_elses_node"):
        wrong = await migrate(client, user, container, device=device)
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["code"] == "device_not_eligible"
    malformed = await migrate(client, user, container, device="NOT A KEY")
    assert malformed.status_code == 422

    still = (
        await client.get(
            f"/api/v1/containers/{container['id']}", params={"live": "true"}, headers=user.headers
        )
    ).json()
    assert (still["device"], still["state"]) == (n1.key, "running")


async def test_the_peer_dying_mid_transfer_rolls_back(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol)
    container = await make_container(client, user, n1.key, "kept")
    # A slow WAN and an image to carry: the transfer lasts long enough to kill the peer in it.
    testbed.bed.docker("n2", "rmi", "-f", IMAGE)
    testbed.bed.degrade("n2", "wan", rate_kbit=2000)
    try:
        answer = await migrate(client, user, container, device=n2.key)
        assert answer.status_code == 202, answer.text
        migration_id = answer.json()["migration"]

        async def transferring() -> bool:
            view = (
                await client.get(f"/api/v1/migrations/{migration_id}", headers=user.headers)
            ).json()
            return any(step["name"] == "dependencies" for step in view["steps"])

        await eventually(transferring, timeout=60, interval=0.05)
        n2.process.signal(signal.SIGKILL)
        migration = await ended(client, user, migration_id)
    finally:
        testbed.bed.degrade("n2", "wan", rate_kbit=0)
        testbed.bed.load_images("n2")

    assert migration["state"] == "rolled_back", migration
    assert migration["error_code"]
    assert inspect(testbed, "n2", container["name"]) is None
    kept = (
        await client.get(
            f"/api/v1/containers/{container['id']}", params={"live": "true"}, headers=user.headers
        )
    ).json()
    assert (kept["device"], kept["state"]) == (n1.key, "running")


# n1 asks for its containers to move after 4 s over 85% CPU (the machine's: every node of
# the testbed reads it, so only n1's monitor is on).
OVERLOAD_TRIGGER = {
    "AGENT_MONITOR_ENABLED": "true",
    "AGENT_MONITOR_INTERVAL_S": "1",
    # The monitor reads the whole machine, which the suite itself keeps busy: only the
    # test's own load (every core spinning) should reach this for that long.
    "AGENT_MONITOR_CPU_PERCENT": "95",
    "AGENT_MONITOR_CPU_CLEAR_PERCENT": "50",
    "AGENT_MONITOR_CPU_FOR_S": "6",
    # A trigger before the container exists must not outlast the test (default 300 s).
    "AGENT_MONITOR_COOLDOWN_S": "5",
}


def load_every_core() -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 2)
    ]


async def test_sensor_messages_follow_the_container_none_lost(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol, n1_env=OVERLOAD_TRIGGER)
    await grant_sensor(api, n1.key, user.tenant_id)
    made = await client.post(
        "/api/v1/containers",
        json={
            "device": n1.key,
            "name": "consumer",
            "image": IMAGE,
            "command": CONSUMER,
            "subscriptions": [SENSOR_TOPIC],
        },
        headers=user.headers,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    container = made.json()
    name = container["name"]
    on_n1 = HandledLog(testbed, "n1", name)
    count = 600  # 12 s at 50 messages/s
    login = sensor_login(testbed, "n1", [SENSOR_TOPIC])
    sensor = asyncio.create_task(
        publish_sequence(testbed.bed.node("n1").wan_ip, count, per_s=50, login=login)
    )
    on_n2: HandledLog | None = None
    try:
        # Some handled on n1 first, then the move while the sensor goes on publishing.
        async def handling() -> bool:
            return len(on_n1.handled) > 50

        await eventually(handling, timeout=30, interval=0.1)
        # Sustained CPU load on n1: its monitor asks the scheduler to move its containers.
        load = load_every_core()
        try:

            async def created_on_n2() -> bool:
                return inspect(testbed, "n2", name) is not None

            await eventually(created_on_n2, timeout=60)
        finally:
            for process in load:
                process.kill()
                process.wait()
        on_n2 = HandledLog(testbed, "n2", name)
        listed = await client.get("/api/v1/migrations", headers=user.headers)
        [started] = listed.json()["items"]
        migration = await ended(client, user, started["id"])
        assert migration["state"] == "completed", migration
        assert migration["reason"] == "cpu"
        assert migration["target"] == n2.key
        await sensor

        async def all_handled() -> bool:
            assert on_n2 is not None
            return any(n == count - 1 for _, n in on_n2.handled)

        await eventually(all_handled, timeout=60, interval=0.2)
    finally:
        sensor.cancel()
        await on_n1.stop()
        if on_n2 is not None:
            await on_n2.stop()

    numbers = [n for _, n in on_n1.handled] + [n for _, n in on_n2.handled]
    # From the first message after the container subscribed (the broker keeps messages only
    # for a session that exists) to the last, none is missing, the move included.
    expected = set(range(min(numbers), count))
    missing = sorted(expected - set(numbers))
    assert not missing, (missing[:5], missing[-5:], len(missing), on_n2.handled[:3])
    # Repeats are allowed (the peer is given again what the source may not have read);
    # the message's own number removes them.
    assert on_n2.handled, "the peer handled nothing"
    assert max(n for _, n in on_n1.handled) < count - 1, "the move came after the sensor ended"


async def test_a_lost_primary_is_restarted_cold_on_a_peer(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol)
    container = await make_container(client, user, n1.key, "survivor")
    # The primary loses power: its agent is gone and nothing answers at its address, its
    # neighbours' measurements included. The scheduler waits out the node-loss window.
    testbed.bed.cut("n1", "wan")
    n1.process.signal(signal.SIGKILL)

    async def moved() -> dict | None:
        listed = await client.get("/api/v1/migrations", headers=user.headers)
        return next((m for m in listed.json()["items"] if m["container"] == container["id"]), None)

    migration = await eventually(moved, timeout=NODE_LOST_AFTER_S + 90, interval=1)
    migration = await ended(client, user, migration["id"])
    assert migration["state"] == "cold_restarted", migration
    assert migration["reason"] == "node_lost"
    assert (migration["source"], migration["target"]) == (n1.key, n2.key)
    window = migration["lost_window"]
    assert window["from"] < window["until"]

    async def running_on_n2() -> bool:
        seen = inspect(testbed, "n2", container["name"])
        return seen is not None and seen["State"]["Running"] is True

    await eventually(running_on_n2, timeout=60, interval=0.5)
    found = (await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)).json()
    assert (found["device"], found["state"]) == (n2.key, "running")


async def test_a_built_image_is_rebuilt_on_the_peer_from_its_context(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    n1, n2, user = await pair(testbed, stack, api, enrol)
    image = f"tenant/built-{secrets.token_hex(3)}:1"
    context = build_context(
        "FROM edgecloud/busybox:latest\nCOPY greeting.txt /greeting.txt\n",
        {"greeting.txt": "built from the tenant's Dockerfile\n"},
    )
    uploaded = await client.post(
        "/api/v1/artifacts",
        files={"file": ("context.tar", context)},
        data={"kind": "file"},
        headers=user.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    made = await client.post(
        "/api/v1/containers",
        json={
            "device": n1.key,
            "name": "built",
            "image": image,
            "command": SERVE,
            "build_artifact": uploaded.json()["id"],
        },
        headers=user.headers,
        timeout=120,
    )
    assert made.status_code == 201, made.text
    container = made.json()
    assert testbed.bed.docker("n2", "image", "inspect", image).returncode != 0

    answer = await migrate(client, user, container, device=n2.key)
    assert answer.status_code == 202, answer.text
    migration = await ended(client, user, answer.json()["migration"])
    assert migration["state"] == "completed", migration

    # Built again on the peer from the context (its history has the COPY step), not loaded;
    # kept as the tenant's own, under no name of the tenant's choosing.
    built = json.loads(testbed.bed.docker("n2", "inspect", container["name"]).stdout)[0]["Image"]
    history = testbed.bed.docker("n2", "history", "--no-trunc", built).stdout
    assert "greeting.txt" in history
    assert testbed.bed.docker("n2", "image", "inspect", image).returncode != 0
    shown = testbed.bed.docker("n2", "exec", container["name"], "cat", "/greeting.txt")
    assert shown.stdout == "built from the tenant's Dockerfile\n"


async def test_a_compromised_node_cannot_plant_another_image_on_its_peer(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    """n3, a node that joined the fleet, is compromised: the container a tenant runs on it
    now runs an image of the attacker's choosing (made by hand on n3's engine, with the
    container's name, labels and /app), and the attacker waits for it to be moved, to have
    its image run on the peer. n2 lacks the image the cloud recorded, so n3 sends the image
    it has: n2 refuses it from its manifest, before loading it, and the move rolls back."""
    n3, n2, user = await pair(testbed, stack, api, enrol, nodes=("n3", "n2"))
    container = await make_container(client, user, n3.key, "victim")
    name = container["name"]
    recorded = inspect(testbed, "n3", name)
    assert recorded is not None

    # The compromise, with n3's agent stopped so that it reports nothing of it.
    testbed.stop_agent("n3")
    bed = testbed.bed
    planted = bed.docker("n3", "commit", name, "planted:latest")
    assert planted.returncode == 0, planted.stderr
    planted_id = json.loads(bed.docker("n3", "image", "inspect", "planted:latest").stdout)[0]["Id"]
    assert planted_id != recorded["Image"]
    labels = [f"--label={k}={v}" for k, v in recorded["Config"]["Labels"].items()]
    volume = next(m["Name"] for m in recorded["Mounts"] if m["Destination"] == "/app")
    assert bed.docker("n3", "rm", "-f", name).returncode == 0
    remade = bed.docker(
        "n3", "run", "-d", "--name", name, *labels,
        "--mount", f"type=volume,src={volume},dst=/app", planted_id, *SERVE,
    )  # fmt: skip
    assert remade.returncode == 0, remade.stderr
    testbed.start_agent("n3", env=AGENT_ENV)
    bed.docker("n2", "rmi", "-f", IMAGE)
    try:
        await measuring(api, n3, n2)  # back online, having measured its peer again
        answer = await migrate(client, user, container, device=n2.key)
        assert answer.status_code == 202, answer.text
        migration = await ended(client, user, answer.json()["migration"])
        assert migration["state"] == "rolled_back", migration
        assert migration["error_code"] == "bad_image", migration
        # Nothing of it on n2: no container, not the planted image; n3's copy serves on.
        assert inspect(testbed, "n2", name) is None
        assert bed.docker("n2", "image", "inspect", planted_id).returncode != 0
        assert inspect(testbed, "n3", name)["State"]["Running"] is True
        found = await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)
        assert found.json()["device"] == n3.key
    finally:
        bed.load_images("n2")


async def test_a_node_cut_off_from_the_cloud_but_reached_by_its_peers_keeps_its_containers(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    """n1 loses the cloud (its router and API unreachable, dropped in its own namespace)
    but not its peers: silent past the loss window, yet n2, asked to measure quiet nodes
    too, still reaches its broker, so n1 is not lost and its container is not started a
    second time elsewhere."""
    n1, n2, user = await pair(testbed, stack, api, enrol)
    container = await make_container(client, user, n1.key, "cutoff")
    cloud_ports = {stack.router_port, stack.ports["gateway"]}
    rules = [["OUTPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"] for port in cloud_ports]
    for rule in rules:
        added = testbed.bed.exec("n1", ["iptables", "-I", *rule])
        assert added.returncode == 0, added.stderr
    try:

        async def offline() -> bool:
            answer = await api.get(f"/api/v1/devices/{n1.key}")
            return answer.json()["status"] == "offline"

        await eventually(offline, timeout=60, interval=0.5)
        # Past the loss window, with a margin for the watchdog's rounds: n2 still reaches it.
        await asyncio.sleep(NODE_LOST_AFTER_S + 10)
        seen = (await api.get(f"/api/v1/devices/{n2.key}")).json()["neighbours"]
        assert n1.key in seen
        listed = await client.get("/api/v1/migrations", headers=user.headers)
        assert [m for m in listed.json()["items"] if m["container"] == container["id"]] == []
        assert inspect(testbed, "n2", container["name"]) is None
        assert inspect(testbed, "n1", container["name"])["State"]["Running"] is True
    finally:
        for rule in rules:
            testbed.bed.exec("n1", ["iptables", "-D", *rule])


async def started(
    testbed: TestbedFleet, api: httpx.AsyncClient, enrol, user: Account, node: str, env: dict
) -> AgentHandle:
    """The node's agent online and granted to ``user``'s tenant."""
    agent = testbed.start_agent(node, token=await enrol(), env=AGENT_ENV | env)

    async def online() -> bool:
        answer = await api.get(f"/api/v1/devices/{agent.key}")
        return answer.status_code == 200 and answer.json()["status"] == "online"

    await eventually(online, timeout=60, interval=0.3)
    granted = await api.post(f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id})
    assert granted.status_code == 201, granted.text
    return agent


async def holding(
    testbed: TestbedFleet,
    client: httpx.AsyncClient,
    user: Account,
    node: str,
    key: str,
    name: str,
    text: str,
) -> dict:
    """A container on ``node`` (its agent's ``key``) with ``text`` in its /app/state.txt."""
    container = await make_container(client, user, key, name)
    wrote = testbed.bed.docker(
        node, "exec", container["name"], "sh", "-c", f"echo {text} > /app/state.txt"
    )
    assert wrote.returncode == 0, wrote.stderr
    return container


async def test_a_kept_container_is_handed_on_when_a_capable_node_appears(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    """Level 1 (reference design 5.1): n2 has storage but offers no compute, so it keeps
    n1's container (its /app and image) and n1's copy stops; when n3 joins, able to run
    it, the scheduler hands it on from n2, and it runs there with the data it had."""
    user = await register(stack)
    n1 = await started(testbed, api, enrol, user, "n1", {})
    n2 = await started(testbed, api, enrol, user, "n2", {"AGENT_COLLABORATION_LEVEL": "1"})
    await measuring(api, n1, n2)
    container = await holding(testbed, client, user, "n1", n1.key, "kept", "kept safe")

    asked = await migrate(client, user, container)
    assert asked.status_code == 202, asked.text
    kept = await ended(client, user, asked.json()["migration"])

    assert kept["state"] == "stored", kept
    assert (kept["level"], kept["keeper"], kept["target"]) == (1, n2.key, n2.key)
    assert [s["name"] for s in kept["steps"]][-2:] == ["store", "stop_source"]
    assert inspect(testbed, "n1", container["name"]) is None
    assert inspect(testbed, "n2", container["name"]) is None  # kept, not run
    found = await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)
    assert (found.json()["device"], found.json()["state"]) == (n2.key, "stored")
    refused = await client.post(f"/api/v1/containers/{container['id']}/start", headers=user.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "container_stored"

    n3 = await started(testbed, api, enrol, user, "n3", {})
    await measuring(api, n2, n3)

    async def handed_on() -> dict | None:
        view = (await client.get(f"/api/v1/migrations/{kept['id']}", headers=user.headers)).json()
        return view if view["state"] not in ("stored", "transferring", "activating") else None

    final = await eventually(handed_on, timeout=120, interval=0.5)
    assert final["state"] == "completed", final
    assert (final["level"], final["keeper"], final["target"]) == (1, n2.key, n3.key)
    assert "hand_on.activation" in [s["name"] for s in final["steps"]]
    seen = inspect(testbed, "n3", container["name"])
    assert seen is not None
    assert seen["State"]["Running"] is True
    data = testbed.bed.docker("n3", "exec", container["name"], "cat", "/app/state.txt")
    assert data.stdout.strip() == "kept safe"

    async def running_on_n3() -> bool:
        view = await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)
        return view.json()["device"] == n3.key and view.json()["state"] == "running"

    await eventually(running_on_n3, timeout=60, interval=0.5)


async def test_a_level_0_peer_finds_a_capable_neighbour_the_source_cannot_reach(
    testbed: TestbedFleet, stack, api, client, enrol
) -> None:
    """Level 0 (reference design 5.1): n1 cannot reach n3 at all (dropped in n1's own
    namespace), and n2, which n1 reaches, offers messaging only. Asked, n2 reaches n3 from
    where it stands, and lends its broker: the container moves from n1 to n3 through it,
    with its data, and n2 runs nothing of it."""
    n3_address = testbed.bed.node("n3").wan_ip
    cut = ["OUTPUT", "-d", n3_address, "-j", "DROP"]
    added = testbed.bed.exec("n1", ["iptables", "-I", *cut])
    assert added.returncode == 0, added.stderr
    try:
        user = await register(stack)
        n1 = await started(testbed, api, enrol, user, "n1", {})
        n2 = await started(testbed, api, enrol, user, "n2", {"AGENT_COLLABORATION_LEVEL": "0"})
        n3 = await started(testbed, api, enrol, user, "n3", {})
        await measuring(api, n1, n2)
        await measuring(api, n2, n3)
        assert n3.key not in (await api.get(f"/api/v1/devices/{n1.key}")).json()["neighbours"]
        container = await holding(testbed, client, user, "n1", n1.key, "relayed", "carried")

        asked = await migrate(client, user, container)
        assert asked.status_code == 202, asked.text
        moved = await ended(client, user, asked.json()["migration"])

        assert moved["state"] == "completed", moved
        assert (moved["level"], moved["via"], moved["target"]) == (0, n2.key, n3.key)
        seen = inspect(testbed, "n3", container["name"])
        assert seen is not None
        assert seen["State"]["Running"] is True
        data = testbed.bed.docker("n3", "exec", container["name"], "cat", "/app/state.txt")
        assert data.stdout.strip() == "carried"
        assert inspect(testbed, "n1", container["name"]) is None
        assert inspect(testbed, "n2", container["name"]) is None
    finally:
        testbed.bed.exec("n1", ["iptables", "-D", *cut])
