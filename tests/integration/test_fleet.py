"""A fleet of simulated agents (tests/support/fleet.py) against the real cloud, at CI size.

Fifty nodes in two processes, each the agent's own uplink, command executor, journal,
report sender and heartbeat code over an in-memory Docker engine: they enrol through the
public API's one-time tokens, show online, have their heartbeats written, take container
commands through the public API, and all come back after the router is killed with
SIGKILL and started again, without losing the command a user issued meanwhile.

bench/fleet.py runs the same simulator by the thousand.
"""

import asyncio
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import eventually
from tests.support.fleet import FleetSettings, SimIdentity, new_identities
from tests.support.fleet_processes import FleetProcesses, enrol
from tests.support.stack import Stack
from tests.support.users import Account, operator_headers, register

pytestmark = pytest.mark.stack

FLEET_SIZE = 50
IMAGE = "edgecloud/busybox:latest"
REJOIN_WITHIN_S = 60


@pytest.fixture(scope="module")
def fleet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A cloud of its own: the router is killed here, and the simulated nodes must not
    become anyone else's peers or placement targets."""
    stack = Stack(backend="postgresql", workdir=tmp_path_factory.mktemp("fleet-stack"))
    with stack.running():
        yield stack


@dataclass
class Fleet:
    stack: Stack
    api: httpx.AsyncClient
    """The public API as the operator."""
    nodes: list[SimIdentity]
    processes: FleetProcesses
    user: Account


@pytest.fixture(scope="module")
async def fleet(fleet_stack: Stack) -> AsyncIterator[Fleet]:
    stack = fleet_stack
    headers = await operator_headers(stack)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), headers=headers, timeout=30) as api:
        nodes = new_identities(FLEET_SIZE, prefix="ci")
        members = await enrol(api, nodes, enrolled=set())
        settings = FleetSettings(
            router_url=stack.router_url,
            heartbeat_interval_s=1.0,
            ramp_s=1.0,
            reconnect_max_s=4.0,
        )
        async with FleetProcesses(
            settings, members, processes=2, workdir=stack.workdir / "fleet"
        ) as processes:
            await processes.wait_connected(timeout=60)
            user = await register(stack)
            for node in nodes[:3]:
                granted = await api.post(
                    f"/api/v1/devices/{node.key}/grants", json={"tenant": user.tenant_id}
                )
                assert granted.status_code == 201, granted.text
            yield Fleet(stack, api, nodes, processes, user)


async def visible_devices(api: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    devices: dict[str, dict[str, object]] = {}
    cursor = None
    while True:
        page = await api.get("/api/v1/devices", params={"limit": 1000, "cursor": cursor})
        assert page.status_code == 200, page.text
        body = page.json()
        devices.update({d["key"]: d for d in body["items"]})
        cursor = body["next_cursor"]
        if cursor is None:
            return devices


async def create_container(fleet: Fleet, node: SimIdentity) -> dict[str, object]:
    async with httpx.AsyncClient(
        base_url=fleet.stack.url("gateway"), headers=fleet.user.headers, timeout=30
    ) as user:
        created = await user.post(
            "/api/v1/containers",
            json={
                "device": node.key,
                "name": f"sim-{secrets.token_hex(3)}",
                "image": IMAGE,
                "command": ["sleep", "3600"],
            },
        )
    assert created.status_code == 201, created.text
    body: dict[str, object] = created.json()
    assert body["state"] == "running"
    return body


async def test_the_fleet_is_online_beats_and_takes_commands(fleet: Fleet) -> None:
    keys = {node.key for node in fleet.nodes}
    devices = await visible_devices(fleet.api)
    assert keys <= devices.keys()
    # Online now, or in a moment for a node whose link flapped on this busy machine.
    await eventually(lambda: all_online(fleet.api, keys), timeout=20, interval=0.5)

    # Every node's heartbeats are written: its metrics history grows with each one.
    async def written(key: str) -> bool:
        answer = await fleet.api.get(f"/api/v1/devices/{key}/metrics")
        assert answer.status_code == 200, answer.text
        return len(answer.json()["items"]) >= 2

    async def all_written() -> bool:
        return all(await asyncio.gather(*(written(key) for key in keys)))

    await eventually(all_written, timeout=20, interval=0.5)

    calls_before = fleet.processes.totals()["engine_calls"]
    reports_before = fleet.processes.totals()["reports_sent"]
    node = fleet.nodes[0]
    container = await create_container(fleet, node)
    path = f"/api/v1/containers/{container['id']}"
    async with httpx.AsyncClient(
        base_url=fleet.stack.url("gateway"), headers=fleet.user.headers, timeout=30
    ) as user:
        stopped = await user.post(f"{path}/stop")
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["state"] == "exited"
        live = await user.get(path, params={"live": "true"})
        assert live.status_code == 200, live.text
        assert live.json()["state"] == "exited"
        restarted = await user.post(f"{path}/restart")
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["state"] == "running"
        removed = await user.delete(path)
        assert removed.status_code == 204, removed.text
        gone = await user.get(path)
        assert gone.status_code == 404

    # The node's engine did them (create, start, stop, restart, remove), and its container
    # reports, from the engine's events, reached the orchestrator (statistics come each second).
    async def applied_and_reported() -> bool:
        totals = fleet.processes.totals()
        return bool(
            totals["engine_calls"] >= calls_before + 5
            and totals["reports_sent"] > reports_before
            and totals["reports_pending"] == 0
        )

    await eventually(applied_and_reported, timeout=10)


async def test_every_node_rejoins_after_a_router_kill_and_no_command_is_lost(
    fleet: Fleet,
) -> None:
    stack = fleet.stack
    # Two containers on two nodes: commands to one node keep their order, but which of two
    # nodes hears first after the outage is not for this test to fix.
    first = await create_container(fleet, fleet.nodes[1])
    second = await create_container(fleet, fleet.nodes[2])
    joined_before = fleet.processes.totals()["min_sessions"]
    assert joined_before >= 1
    loop = asyncio.get_running_loop()

    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), headers=fleet.user.headers, timeout=30
    ) as user:
        assert stack.router is not None
        os.killpg(stack.router.pid, signal.SIGKILL)
        await loop.run_in_executor(None, stack.router.wait, 10)
        await fleet.processes.wait_until(
            lambda t: t["connected"] == 0, timeout=15, what="every node to lose its link"
        )

        # Issued while the router is down: it waits in the orchestrator's outbox.
        stop = await user.post(f"/api/v1/containers/{first['id']}/stop")
        assert stop.status_code == 202, stop.text
        waiting = await user.get(f"/api/v1/commands/{stop.json()['command']}")
        assert waiting.json()["state"] == "queued", waiting.text

        await loop.run_in_executor(None, stack.restart_router)
        restarted_at = time.monotonic()
        # Issued just after the router is back, whether or not its node has rejoined yet.
        restart = await user.post(f"/api/v1/containers/{second['id']}/restart")
        assert restart.status_code in (200, 202), restart.text

        await fleet.processes.wait_rejoined(joined_before + 1, timeout=REJOIN_WITHIN_S)
        assert time.monotonic() - restarted_at < REJOIN_WITHIN_S

        async def succeeded(command: str) -> bool:
            answer = await user.get(f"/api/v1/commands/{command}")
            assert answer.status_code == 200, answer.text
            state = answer.json()["state"]
            assert state in ("queued", "sent", "succeeded"), answer.text
            return bool(state == "succeeded")

        await eventually(lambda: succeeded(stop.json()["command"]), timeout=30, interval=0.2)
        if restart.status_code == 202:
            restart_command = restart.json()["command"]
            await eventually(lambda: succeeded(restart_command), timeout=30, interval=0.2)
        for container, state in ((first, "exited"), (second, "running")):
            path = f"/api/v1/containers/{container['id']}"
            live = await user.get(path, params={"live": "true"})
            assert live.status_code == 200, live.text
            assert live.json()["state"] == state
            assert (await user.delete(path)).status_code == 204

    # Every node is a device online again, as the API shows it.
    keys = {node.key for node in fleet.nodes}
    await eventually(lambda: all_online(fleet.api, keys), timeout=20, interval=0.5)


async def all_online(api: httpx.AsyncClient, keys: set[str]) -> bool:
    devices = await visible_devices(api)
    return all(devices[key]["status"] == "online" for key in keys)
