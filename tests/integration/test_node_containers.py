"""The agent reports the containers on its node's Docker engine in its heartbeats."""

import secrets
import shutil
import subprocess

import pytest

from tests.conftest import eventually
from tests.support.agents import AgentFactory

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def container():
    if shutil.which("docker") is None or docker("image", "inspect", IMAGE).returncode != 0:
        pytest.fail(f"docker with {IMAGE} is needed: run 'make setup'")
    name = f"ec-test-{secrets.token_hex(4)}"
    created = docker("create", "--name", name, "--network", "none", IMAGE, "true")
    assert created.returncode == 0, created.stderr
    try:
        yield name
    finally:
        docker("rm", "-f", name)


async def test_heartbeats_list_the_nodes_containers(
    api, agents: AgentFactory, enrol, container
) -> None:
    agent = agents.start(token=await enrol())

    async def reported() -> dict | None:
        response = await api.get(f"/api/v1/devices/{agent.key}")
        if response.status_code != 200:
            return None
        by_name = {c["name"]: c for c in response.json()["containers"]}
        return by_name.get(container)

    seen = await eventually(reported, timeout=15)
    assert seen["image"] == IMAGE
    assert seen["state"] == "created"
    assert len(seen["id"]) == 64
