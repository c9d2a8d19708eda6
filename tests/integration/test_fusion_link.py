"""The fusion link on one machine: a real agent whose WAN is a loopback proxy that can be cut
silently, and whose fallback reaches the router directly (the testbed does the same across
network namespaces with a shaped 6LoWPAN hop and a neighbour's relay)."""

import asyncio
import time

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.conftest import docker
from tests.integration.test_containers import IMAGE, create
from tests.support.agents import AgentFactory
from tests.support.links import SeverableLink
from tests.support.users import register

pytestmark = pytest.mark.stack


class StatusWatch:
    """Every status the API shows for a device, polled every 50 ms."""

    def __init__(self, api: httpx.AsyncClient, key: str) -> None:
        self.seen: list[tuple[float, str, str | None]] = []
        self._task = asyncio.create_task(self._poll(api, key))

    async def _poll(self, api: httpx.AsyncClient, key: str) -> None:
        while True:
            answer = await api.get(f"/api/v1/devices/{key}")
            if answer.status_code == 200:  # 404 until its first heartbeat
                device = answer.json()
                self.seen.append((time.monotonic(), device["status"], device["link"]))
            await asyncio.sleep(0.05)

    async def until(
        self, status: str, link: str | None, *, after: float = 0.0, timeout: float
    ) -> float:
        """When the device was first seen so after ``after`` (monotonic)."""

        async def reached() -> float | None:
            return next(
                (t for t, s, lk in self.seen if t > after and (s, lk) == (status, link)), None
            )

        return float(await eventually(reached, timeout=timeout, interval=0.05))

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_a_cut_wan_fails_over_to_the_mesh_and_comes_back(
    stack, api, client, agents: AgentFactory, enrol
) -> None:
    async with SeverableLink("127.0.0.1", stack.router_port) as wan:
        agent = agents.start(
            token=await enrol(),
            # The liveness window (3 beats) must outlast a failover, as 3 x 5 s does.
            heartbeat_interval_s=2,
            extra_env={
                "AGENT_UPLINKS": f"wan={wan.url()},lowpan={stack.router_url}",
                "AGENT_LOWPAN_HEARTBEAT_INTERVAL_S": "1",
                "AGENT_LOWPAN_PING_INTERVAL_S": "2",
                "AGENT_LOWPAN_PING_TIMEOUT_S": "2",
            },
        )
        watch = StatusWatch(api, agent.key)
        user = await register(stack)
        try:
            await watch.until("online", "wan", timeout=20)
            granted = await api.post(
                f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id}
            )
            assert granted.status_code == 201

            # The WAN goes silent: no close, no reset. Pings notice; the mesh takes over.
            cut_at = time.monotonic()
            await wan.cut()
            degraded_at = await watch.until("degraded", "lowpan", after=cut_at, timeout=15)
            assert degraded_at - cut_at < 8
            # Commands work over the mesh, and compact beats still carry container changes.
            created = await create(
                client, user, device=agent.key, name="meshy", image=IMAGE, command=["sleep", "60"]
            )
            assert created.status_code == 201, created.text

            async def listed() -> bool:
                device = (await api.get(f"/api/v1/devices/{agent.key}")).json()
                return any(c["name"].endswith("-meshy") for c in device["containers"])

            await eventually(listed, timeout=10)

            restored_at = time.monotonic()
            await wan.restore()
            back_at = await watch.until("online", "wan", after=restored_at, timeout=15)
            assert back_at - restored_at < 10
            # Never offline: the mesh session joined before the dead WAN one was dropped, and
            # the WAN one joined before the mesh one left.
            assert "offline" not in {status for _, status, _ in watch.seen}
            history = (await api.get(f"/api/v1/devices/{agent.key}/history")).json()["items"]
            changes = [(c["status"], c["link"]) for c in reversed(history)]
            assert changes == [("online", "wan"), ("degraded", "lowpan"), ("online", "wan")]
        finally:
            await watch.stop()
            for line in docker(
                "ps", "-aq", "--filter", f"label=edgecloud.tenant={user.tenant_id}"
            ).stdout.split():
                docker("rm", "-f", line)


async def test_a_duty_cycled_node_sleeps_and_gets_its_commands_at_the_next_contact(
    stack, api, client, agents: AgentFactory, enrol
) -> None:
    agent = agents.start(
        token=await enrol(),
        heartbeat_interval_s=0.5,
        extra_env={"AGENT_DUTY_CYCLE_AWAKE_S": "3", "AGENT_DUTY_CYCLE_ASLEEP_S": "5"},
    )
    user = await register(stack)
    try:

        async def seen(status: str) -> dict | None:
            answer = await api.get(f"/api/v1/devices/{agent.key}")
            device = answer.json() if answer.status_code == 200 else {}
            return device if device.get("status") == status else None

        await eventually(lambda: seen("online"), timeout=20)
        granted = await api.post(
            f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id}
        )
        assert granted.status_code == 201
        asleep = await eventually(lambda: seen("offline"), timeout=10, interval=0.1)
        assert asleep["next_contact_at"] is not None
        detail = (await api.get(f"/api/v1/devices/{agent.key}")).json()
        assert detail["status_reason"].startswith("asleep until"), detail["status_reason"]

        # A command for the sleeping node waits in the cloud and is applied at its contact.
        queued = await create(
            client, user, device=agent.key, name="later", image=IMAGE, command=["sleep", "60"]
        )
        assert queued.status_code == 202, queued.text
        container_id = queued.json()["id"]

        async def running() -> bool:
            found = await client.get(f"/api/v1/containers/{container_id}", headers=user.headers)
            return found.json()["state"] == "running"

        await eventually(running, timeout=30, interval=0.2)
        await eventually(lambda: seen("offline"), timeout=10, interval=0.1)  # and back to sleep
    finally:
        tenant = f"label=edgecloud.tenant={user.tenant_id}"
        for line in docker("ps", "-aq", "--filter", tenant).stdout.split():
            docker("rm", "-f", line)
