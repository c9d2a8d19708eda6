"""A dead mesh hop noticed by its relay's beacons, not by a heartbeat: n1, on the mesh through
n2's relay since its WAN was cut, loses the lowpan link to n2 too, while idle and with its
next heartbeat ten minutes away."""

import asyncio

import httpx
import pytest

from tests.conftest import eventually
from tests.support.agents import AgentHandle
from tests.support.testbed import TestbedFleet

pytestmark = pytest.mark.stack

# A heartbeat on the mesh only every 10 minutes: an unanswered one cannot be what notices.
MESH_ENV = {"AGENT_LOWPAN_HEARTBEAT_INTERVAL_S": "600", "AGENT_STOP_TIMEOUT_S": "2"}
LOST = "lost the lowpan link"
SILENCE_S = 14.0
"""The agents' default AGENT_LOWPAN_SILENCE_S."""


def log_of(agent: AgentHandle, since: int = 0) -> str:
    return agent.process.log_path.read_bytes()[since:].decode(errors="replace")


async def test_a_dead_mesh_link_is_noticed_without_a_heartbeat(
    testbed: TestbedFleet, api: httpx.AsyncClient, enrol
) -> None:
    n2 = testbed.start_agent("n2", token=await enrol(), fusion=True, env=MESH_ENV)
    n1 = testbed.start_agent("n1", token=await enrol(), fusion=True, env=MESH_ENV)

    async def on(link: str) -> bool:
        answer = await api.get(f"/api/v1/devices/{n1.key}")
        return answer.status_code == 200 and answer.json()["link"] == link

    await eventually(lambda: on("wan"), timeout=60, interval=0.2)
    testbed.bed.cut("n1", "wan")
    await eventually(lambda: on("lowpan"), timeout=60, interval=0.2)
    on_mesh = n1.process.log_path.stat().st_size
    # Idle on a working hop for three times the silence that ends it: the beacons come.
    await asyncio.sleep(3 * SILENCE_S)
    assert LOST not in log_of(n1, on_mesh)
    assert await on("lowpan")
    assert n2.process.running()
    since = n1.process.log_path.stat().st_size

    testbed.bed.cut("n1", "n2")

    async def noticed() -> str | None:
        lines = [line for line in log_of(n1, since).splitlines() if LOST in line]
        return lines[0] if lines else None

    # Well before the next heartbeat (10 minutes), and with no ping on the mesh link.
    line = await eventually(noticed, timeout=60, interval=0.2)
    assert "relay silent" in line, line
