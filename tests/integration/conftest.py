"""Fixtures of the integration tests that need a running node."""

import subprocess

import httpx
import pytest

from tests.conftest import eventually
from tests.support.agents import AgentFactory
from tests.support.users import register


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


async def online(api: httpx.AsyncClient, key: str) -> bool:
    answer = await api.get(f"/api/v1/devices/{key}")
    return answer.status_code == 200 and answer.json()["status"] == "online"


@pytest.fixture
async def node(stack, api, agents: AgentFactory, enrol):
    """A running agent granted to a fresh tenant, whose user is returned with it."""
    agent = agents.start(token=await enrol())
    await eventually(lambda: online(api, agent.key), timeout=20)
    user = await register(stack)
    granted = await api.post(f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id})
    assert granted.status_code == 201
    yield agent, user
    remove_tenant_containers(user.tenant_id)


def remove_tenant_containers(tenant_id: str) -> None:
    """Every container and application volume of a tenant on this machine's engine."""
    tenant = f"label=edgecloud.tenant={tenant_id}"
    for line in docker("ps", "-aq", "--filter", tenant).stdout.split():
        docker("rm", "-f", line)
    # Application volumes are named: removing a container leaves them behind.
    for line in docker("volume", "ls", "-q", "--filter", tenant).stdout.split():
        docker("volume", "rm", "-f", line)
    # And its network on the node, which the agent removes with its last container.
    network = f"label=edgecloud.network.tenant={tenant_id}"
    for line in docker("network", "ls", "-q", "--filter", network).stdout.split():
        docker("network", "rm", line)
