"""Liveness: a device goes offline when its heartbeats stop or its session leaves."""

import signal
import time

import httpx
import pytest

from tests.conftest import eventually
from tests.support.agents import HEARTBEAT_INTERVAL_S, AgentFactory
from tests.support.users import register

pytestmark = pytest.mark.stack

MISSED_HEARTBEATS = 3  # the registry's default
# The sweep runs every 0.2 s in tests; allow for it and for a loaded machine.
OFFLINE_WINDOW_S = MISSED_HEARTBEATS * HEARTBEAT_INTERVAL_S + 0.2 + 1.5


async def status_of(api: httpx.AsyncClient, key: str) -> dict:
    response = await api.get(f"/api/v1/devices/{key}")
    assert response.status_code == 200, response.text
    return response.json()


async def online_agent(api, agents: AgentFactory, enrol):
    agent = agents.start(token=await enrol())

    async def online() -> bool:
        response = await api.get(f"/api/v1/devices/{agent.key}")
        return response.status_code == 200 and response.json()["status"] == "online"

    await eventually(online, timeout=15)
    return agent


async def wait_offline(api: httpx.AsyncClient, key: str, timeout: float) -> dict:
    async def offline() -> dict | None:
        seen = await status_of(api, key)
        return seen if seen["status"] == "offline" else None

    return await eventually(offline, timeout=timeout, interval=0.02)


async def test_clean_stop_is_offline_within_a_second(api, agents: AgentFactory, enrol) -> None:
    agent = await online_agent(api, agents, enrol)
    stopped_at = time.monotonic()
    agent.process.signal(signal.SIGTERM)
    seen = await wait_offline(api, agent.key, timeout=1.0)
    assert time.monotonic() - stopped_at <= 1.0
    assert seen["status_reason"] == "session closed"
    assert seen["link"] is None
    assert agent.process.wait(timeout=10) == 0


async def test_killed_agent_is_offline_within_the_window(api, agents: AgentFactory, enrol) -> None:
    agent = await online_agent(api, agents, enrol)
    agent.process.signal(signal.SIGKILL)
    seen = await wait_offline(api, agent.key, timeout=OFFLINE_WINDOW_S)
    assert seen["status_reason"] in ("session closed", "missed heartbeats")


async def test_frozen_agent_is_offline_after_missed_heartbeats(
    api, agents: AgentFactory, enrol
) -> None:
    # A frozen process keeps its TCP connection open: only missing heartbeats tell.
    agent = await online_agent(api, agents, enrol)
    agent.process.signal(signal.SIGSTOP)
    try:
        seen = await wait_offline(api, agent.key, timeout=OFFLINE_WINDOW_S)
        assert seen["status_reason"] == "missed heartbeats"
    finally:
        agent.process.signal(signal.SIGCONT)

    # Thawed, it beats again and is back online.
    async def online() -> bool:
        return (await status_of(api, agent.key))["status"] == "online"

    await eventually(online, timeout=15)


async def test_metrics_history_grows(api, agents: AgentFactory, enrol) -> None:
    agent = await online_agent(api, agents, enrol)

    async def several_points() -> list | None:
        response = await api.get(f"/api/v1/devices/{agent.key}/metrics")
        items = response.json()["items"]
        return items if len(items) >= 3 else None

    points = await eventually(several_points, timeout=15)
    assert all(0 <= p["cpu_percent"] <= 100 and p["memory_used"] > 0 for p in points)
    times = [p["at"] for p in points]
    assert times == sorted(times)
    since = points[1]["at"]
    later = (await api.get(f"/api/v1/devices/{agent.key}/metrics", params={"since": since})).json()
    assert all(p["at"] >= since for p in later["items"])
    assert len(later["items"]) < len(points) + 5


async def test_the_status_history_keeps_each_change_and_its_link(
    stack, api, agents: AgentFactory, enrol
) -> None:
    agent = await online_agent(api, agents, enrol)
    agent.process.signal(signal.SIGTERM)
    await wait_offline(api, agent.key, timeout=5)
    history = await api.get(f"/api/v1/devices/{agent.key}/history")
    assert history.status_code == 200, history.text
    changes = [(c["status"], c["link"], c["reason"]) for c in history.json()["items"]]
    # Newest first.
    assert changes[0] == ("offline", None, "session closed")
    assert changes[-1][:2] == ("online", "wan")
    assert len((await api.get(f"/api/v1/devices/{agent.key}/history?limit=1")).json()["items"]) == 1
    # Another tenant cannot read it; a bad limit is refused.
    stranger = await register(stack)
    hidden = await api.get(f"/api/v1/devices/{agent.key}/history", headers=stranger.headers)
    assert hidden.status_code == 404
    assert (await api.get(f"/api/v1/devices/{agent.key}/history?limit=0")).status_code == 422
