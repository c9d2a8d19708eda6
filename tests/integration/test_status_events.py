"""Status changes are published on edge.event.device.status and survive a router restart."""

import asyncio

import pytest

from edgecloud_servicekit.wamp import Subscription, WampLink
from tests.conftest import eventually
from tests.support.agents import AgentFactory
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack


async def test_status_changes_are_published(stack, enrol) -> None:
    received: list[dict] = []

    async def collect(event: dict) -> None:
        received.append(event)

    link = WampLink(
        url=stack.router_url,
        realm="edgecloud",
        authid="orchestrator",
        ticket=stack.tickets["orchestrator"],
        subscriptions=[Subscription("edge.event.device.status", collect)],
    )
    async with link:
        await link.wait_joined(10)
        key = probe_key()
        async with device_session(stack, key=key, token=await enrol()) as uplink:
            from tests.support.beats import heartbeat

            await uplink.call("edge.registry.heartbeat", heartbeat(key), timeout=5)
            await uplink.call(
                "edge.registry.heartbeat", heartbeat(key, seq=2, link="lowpan"), timeout=5
            )

        async def three() -> list | None:
            mine = [e for e in received if e["key"] == key]
            return mine if len(mine) >= 3 else None

        events = await eventually(three, timeout=10)
    assert [(e["status"], e["previous"]) for e in events] == [
        ("online", None),
        ("degraded", "online"),
        ("offline", "degraded"),
    ]
    assert events[1]["link"] == "lowpan"
    assert events[2]["reason"] == "session closed"


async def test_everything_rejoins_after_a_router_restart(
    stack, api, agents: AgentFactory, enrol
) -> None:
    agent = agents.start(token=await enrol())

    async def status(wanted: str) -> bool:
        response = await api.get(f"/api/v1/devices/{agent.key}")
        return response.status_code == 200 and response.json()["status"] == wanted

    await eventually(lambda: status("online"), timeout=15)
    await asyncio.get_running_loop().run_in_executor(None, lambda: stack.restart_router(down_for=1))

    beats_at_restart = (await api.get(f"/api/v1/devices/{agent.key}")).json()["heartbeats"]

    # Services rejoin by themselves, the agent logs in again with its stored key,
    # and its heartbeats are accepted again.
    async def beating_again() -> bool:
        seen = (await api.get(f"/api/v1/devices/{agent.key}")).json()
        return seen["status"] == "online" and seen["heartbeats"] >= beats_at_restart + 3

    await eventually(beating_again, timeout=30)
    assert agent.process.running()
