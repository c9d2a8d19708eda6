"""Pausing the cloud's own parts (SIGSTOP, then SIGCONT) for more than twice the liveness
window, with two real agents and a container on one of them: the router, then PostgreSQL.
No device is marked offline and no migration starts, because silence counts only while
the cloud could have heard (the registry's sweep and the scheduler's node loss watch both
wait out their own outages). Then the control: the container's node is killed for real, and
it is marked offline and its container restarted elsewhere, so the same stack does act on
a real loss.

The stack is this module's own: a node loss window of 3 s instead of 90 s.
"""

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import eventually
from tests.integration.conftest import online, remove_tenant_containers
from tests.support.agents import HEARTBEAT_INTERVAL_S, AgentFactory
from tests.support.brokers import NodeBroker
from tests.support.stack import Stack
from tests.support.users import Account, operator_headers, register

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
LIVENESS_WINDOW_S = 3 * HEARTBEAT_INTERVAL_S
NODE_LOST_AFTER_S = 3.0
PAUSE_S = 2 * max(LIVENESS_WINDOW_S, NODE_LOST_AFTER_S) + 1
POSTGRES_PID_FILE = Path("/var/run/postgresql/15-main.pid")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        backend="postgresql",
        workdir=tmp_path_factory.mktemp("pauses"),
        extra_env={
            "MIGRATION_SCHEDULER_NODE_LOST_AFTER_S": str(NODE_LOST_AFTER_S),
            "MIGRATION_SCHEDULER_NODE_LOSS_CHECK_EVERY_S": "0.5",
        },
    )
    with stack.running():
        yield stack


@pytest.fixture(scope="module")
async def fleet(
    cloud: Stack, tmp_path_factory: pytest.TempPathFactory, node_broker: NodeBroker
) -> AsyncIterator[tuple[httpx.AsyncClient, Account, list[Any]]]:
    agents = AgentFactory(cloud, tmp_path_factory.mktemp("agents"), node_broker)
    user = await register(cloud)
    headers = await operator_headers(cloud)
    async with httpx.AsyncClient(base_url=cloud.url("gateway"), headers=headers, timeout=15) as api:
        nodes = []
        for _ in range(2):
            token = (await api.post("/api/v1/devices/enrolments", json={})).json()["token"]
            nodes.append(agents.start(token=token))
        try:
            for node in nodes:
                await eventually(lambda node=node: online(api, node.key), timeout=30)
                granted = await api.post(
                    f"/api/v1/devices/{node.key}/grants", json={"tenant": user.tenant_id}
                )
                assert granted.status_code == 201, granted.text
            yield api, user, nodes
        finally:
            agents.stop_all()
            remove_tenant_containers(user.tenant_id)


def process_tree(root: int) -> list[psutil.Process]:
    parent = psutil.Process(root)
    return [parent, *parent.children(recursive=True)]


async def paused(processes: list[psutil.Process], seconds: float, stack: Stack) -> None:
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds / 2)
        # Not ready, yet alive: nothing for Kubernetes to restart.
        async with httpx.AsyncClient(timeout=5) as probe:
            for service in ("registry", "orchestrator"):
                live = await probe.get(f"{stack.url(service)}/livez")
                assert live.status_code == 200, f"{service} /livez: {live.status_code}"
        await asyncio.sleep(seconds / 2)
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)


async def offline_ever(api: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    history = await api.get(f"/api/v1/devices/{key}/history")
    assert history.status_code == 200, history.text
    return [change for change in history.json()["items"] if change["status"] == "offline"]


async def migrations_of(api: httpx.AsyncClient, user: Account) -> list[dict[str, Any]]:
    answer = await api.get("/api/v1/migrations", headers=user.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def test_pauses_of_the_router_and_the_database_mark_no_one_and_move_nothing(
    cloud: Stack, fleet: Any
) -> None:
    api, user, (home, peer) = fleet
    created = await api.post(
        "/api/v1/containers",
        headers=user.headers,
        json={"device": home.key, "name": "stays", "image": IMAGE, "command": ["sleep", "600"]},
    )
    assert created.status_code == 201, created.text
    container = created.json()["id"]

    assert cloud.router is not None
    postgres = int(POSTGRES_PID_FILE.read_text().split()[0])  # noqa: ASYNC240
    for part, pid in (("router", cloud.router.pid), ("postgresql", postgres)):
        await paused(process_tree(pid), PAUSE_S, cloud)
        # Longer than the node loss window after the pause: a wrong decision would be made by now.
        await asyncio.sleep(NODE_LOST_AFTER_S + 2)
        for node in (home, peer):
            marked = await offline_ever(api, node.key)
            assert marked == [], f"marked offline by the {part} pause: {marked}"
            assert (await api.get(f"/api/v1/devices/{node.key}")).json()["status"] == "online"
        assert await migrations_of(api, user) == [], f"a migration started by the {part} pause"

    # The control: a node that really dies is marked and its container moves.
    home.process.signal(signal.SIGKILL)
    await eventually(lambda: offline_ever(api, home.key), timeout=30)

    async def moved() -> list[dict[str, Any]]:
        return [m for m in await migrations_of(api, user) if m["container"] == container]

    started = await eventually(moved, timeout=60, interval=0.5)
    assert started[0]["source"] == home.key
