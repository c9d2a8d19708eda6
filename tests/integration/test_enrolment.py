"""Enrolment: a one-time token lets one new agent register its own key, once."""

import os
import platform
import stat
import time

import httpx
import psutil
import pytest

from tests.conftest import eventually
from tests.support.agents import HEARTBEAT_INTERVAL_S, AgentFactory
from tests.support.users import register

pytestmark = pytest.mark.stack

EX_CONFIG = 78


async def device(api: httpx.AsyncClient, key: str) -> dict | None:
    response = await api.get(f"/api/v1/devices/{key}")
    return response.json() if response.status_code == 200 else None


async def test_enrolled_agent_appears_with_its_details(api, agents: AgentFactory, enrol) -> None:
    agent = agents.start(token=await enrol(), location="building 3")
    started = time.monotonic()

    seen = await eventually(lambda: device(api, agent.key), timeout=15)
    # Process start-up plus at most two heartbeat intervals.
    assert time.monotonic() - started < 10 + 2 * HEARTBEAT_INTERVAL_S

    assert seen["id"] == agent.id == f"{agent.hostname}/{agent.mac}"
    assert seen["name"] == agent.hostname
    assert seen["mac"] == agent.mac
    assert seen["location"] == "building 3"
    assert seen["arch"] == platform.machine()
    assert seen["kernel"] == platform.release()
    assert seen["cpu_count"] == psutil.cpu_count()
    assert seen["memory_total"] == psutil.virtual_memory().total
    assert seen["disk_total"] > 0
    assert seen["os"]
    assert seen["status"] == "online"
    assert seen["link"] == "wan"
    assert seen["last_seen"] is not None
    assert 0 <= seen["metrics"]["cpu_percent"] <= 100
    assert seen["metrics"]["memory_used"] > 0
    assert seen["heartbeat_interval_s"] == HEARTBEAT_INTERVAL_S
    assert seen["runtime"] in ("docker", "unavailable")

    listed = (await api.get("/api/v1/devices")).json()
    assert agent.key in [item["key"] for item in listed["items"]]


async def test_credential_file_is_private(api, agents: AgentFactory, enrol) -> None:
    agent = agents.start(token=await enrol())
    await eventually(lambda: device(api, agent.key), timeout=15)
    credential = agent.state_dir / "credential.json"
    assert stat.S_IMODE(os.stat(credential).st_mode) == 0o600
    assert '"enrolled": true' in credential.read_text()


async def test_token_works_only_once(api, agents: AgentFactory, enrol) -> None:
    token = await enrol()
    first = agents.start(token=token)
    await eventually(lambda: device(api, first.key), timeout=15)

    second = agents.start(token=token)
    assert second.process.wait(timeout=20) == EX_CONFIG
    assert "edge.error.auth.enrolment_invalid" in second.process.log_tail()
    assert await device(api, second.key) is None


async def test_unknown_device_without_token_is_refused(api, agents: AgentFactory) -> None:
    stranger = agents.start(token=None)
    assert stranger.process.wait(timeout=20) == EX_CONFIG
    assert "edge.error.auth.unknown_device" in stranger.process.log_tail()
    assert await device(api, stranger.key) is None


async def test_made_up_token_is_refused(api, agents: AgentFactory) -> None:
    stranger = agents.start(token="ece_this-token-was-never-issued")
    assert stranger.process.wait(timeout=20) == EX_CONFIG
    assert await device(api, stranger.key) is None


async def test_restart_reuses_the_credential(api, agents: AgentFactory, enrol) -> None:
    first = agents.start(token=await enrol())
    await eventually(lambda: device(api, first.key), timeout=15)
    first.process.stop()
    await eventually(lambda: _status(api, first.key, "offline"), timeout=5)

    again = agents.start(
        token=None, hostname=first.hostname, mac=first.mac, state_dir=first.state_dir
    )
    await eventually(lambda: _status(api, again.key, "online"), timeout=15)
    assert again.process.running()


async def test_revoked_device_is_disconnected_and_refused(api, agents: AgentFactory, enrol) -> None:
    agent = agents.start(token=await enrol())
    await eventually(lambda: _status(api, agent.key, "online"), timeout=15)

    revoked = await api.post(f"/api/v1/devices/{agent.key}/revoke")
    assert revoked.status_code == 204, revoked.text

    # Its live session is ended at once, and the next login is refused.
    assert agent.process.wait(timeout=15) == EX_CONFIG
    assert "edge.error.auth.revoked" in agent.process.log_tail()
    await eventually(lambda: _status(api, agent.key, "offline"), timeout=5)


async def test_revoking_an_unknown_device_is_404(api) -> None:
    response = await api.post("/api/v1/devices/no_such_device_000000000000/revoke")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "device_not_found"


async def _status(api: httpx.AsyncClient, key: str, wanted: str) -> bool:
    seen = await device(api, key)
    return seen is not None and seen["status"] == wanted


async def test_a_revoked_device_does_not_come_back_and_a_readmitted_one_starts_clean(
    stack, api, agents: AgentFactory, enrol, tmp_path
) -> None:
    """The same machine (hostname and MAC, so the same device key) with a new key and an
    ordinary enrolment token is refused; with a token the operator made for it, it comes
    back with no grants."""
    agent = agents.start(token=await enrol())
    await eventually(lambda: _status(api, agent.key, "online"), timeout=15)
    tenant = await register(stack)
    granted = await api.post(
        f"/api/v1/devices/{agent.key}/grants", json={"tenant": tenant.tenant_id}
    )
    assert granted.status_code == 201, granted.text
    assert (await api.post(f"/api/v1/devices/{agent.key}/revoke")).status_code == 204
    assert agent.process.wait(timeout=15) == EX_CONFIG

    token = await enrol()
    again = agents.start(
        token=token, hostname=agent.hostname, mac=agent.mac, state_dir=tmp_path / "fresh-state"
    )
    assert again.process.wait(timeout=20) == EX_CONFIG
    assert "edge.error.auth.revoked" in again.process.log_tail()
    assert (await api.get(f"/api/v1/devices/{agent.key}")).json()["status"] == "offline"

    readmission = await api.post("/api/v1/devices/enrolments", json={"device": agent.key})
    assert readmission.status_code == 201, readmission.text
    back = agents.start(
        token=readmission.json()["token"],
        hostname=agent.hostname,
        mac=agent.mac,
        state_dir=tmp_path / "reinstalled",
    )
    await eventually(lambda: _status(api, agent.key, "online"), timeout=15)
    assert back.process.running()
    assert (await api.get(f"/api/v1/devices/{agent.key}/grants")).json()["items"] == []
    assert (
        await api.get(f"/api/v1/devices/{agent.key}", headers=tenant.headers)
    ).status_code == 404
    # A token for an enrolled device is refused.
    refused = await api.post("/api/v1/devices/enrolments", json={"device": agent.key})
    assert refused.status_code == 409
    assert refused.json()["code"] == "device_enrolled"
