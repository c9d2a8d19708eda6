"""Fixtures for the agent's tests against the machine's real Docker engine.

Containers get unique names (``t-<random>``) and are removed after each test, whatever
happened. The engine runs with ``--bridge=none``, so tenant containers use network none.
"""

import json
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.deploy.commands import CommandExecutor
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.runtime.hardening import ContainerPolicy
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.state.journal import CommandJournal
from edgecloud_agent.uplink.wamp import Backoff, Login, Uplink
from edgecloud_contracts.containers import (
    MIB,
    Action,
    Command,
    ContainerSpec,
    Limits,
    PullProgress,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "edgecloud/busybox:latest"
REGISTRY_IMAGE = "127.0.0.1:5000/edgecloud/busybox:1.0"
NETWORK = "none"


def docker(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """The docker CLI (what an operator would see), with a deadline."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=check
    )


def docker_inspect(name: str) -> dict[str, Any]:
    result = docker("inspect", "--type", "container", name, check=True)
    return dict(json.loads(result.stdout)[0])


def containers_named(name: str) -> list[str]:
    """Ids of every container (any state) with exactly this name."""
    result = docker("ps", "-aq", "--no-trunc", "--filter", f"name=^/{name}$", check=True)
    return result.stdout.split()


def make_spec(name: str, **overrides: Any) -> ContainerSpec:
    fields: dict[str, Any] = {
        "container_id": f"c-{secrets.token_hex(8)}",
        "docker_name": name,
        "image": IMAGE,
        "command": ["sleep", "600"],
        "env": {"GREETING": "hello"},
        "limits": Limits(memory=64 * MIB, cpus=0.5, pids=64),
        "tenant_id": "tenant-1",
        "owner": "alice",
    }
    fields.update(overrides)
    return ContainerSpec(**fields)


def command_for(spec: ContainerSpec, action: Action, command_id: str | None = None) -> Command:
    return Command(
        id=command_id or f"cmd-{secrets.token_hex(8)}",
        action=action,
        container_id=spec.container_id,
        docker_name=spec.docker_name,
        spec=spec if action is Action.CREATE else None,
    )


@pytest.fixture
def names() -> Iterator[Callable[[], str]]:
    """Unique container names; every container by those names is removed afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"t-{secrets.token_hex(6)}")
        return made[-1]

    yield make
    for name in made:
        volumes = docker("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", name).stdout
        docker("rm", "-f", name)
        for volume in volumes.split():  # named application volumes outlive their container
            docker("volume", "rm", "-f", volume)


@pytest.fixture
async def runtime() -> AsyncIterator[DockerRuntime]:
    async with DockerRuntime(
        timeout_s=20, pull_timeout_s=60, policy=ContainerPolicy(network=NETWORK)
    ) as opened:
        yield opened


class Node:
    """An executor with its journal and desired state in one state directory."""

    def __init__(self, runtime: DockerRuntime, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pulls: list[PullProgress] = []
        self.journal = CommandJournal(state_dir)
        self.desired = DesiredState(state_dir)
        self.executor = CommandExecutor(
            runtime=runtime,
            journal=self.journal,
            desired=self.desired,
            stop_timeout_s=1,
            on_pull=self.pulls.append,
        )

    def close(self) -> None:
        self.journal.close()
        self.desired.close()


@pytest.fixture
def node_factory(runtime: DockerRuntime, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    opened: list[Node] = []

    def make(state_dir: Path | None = None, docker_runtime: DockerRuntime | None = None) -> Node:
        opened.append(Node(docker_runtime or runtime, state_dir or tmp_path / "state"))
        return opened[-1]

    yield make
    for node in opened:
        node.close()


@pytest.fixture
def node(node_factory: Callable[..., Node]) -> Node:
    return node_factory()


@pytest.fixture(scope="session")
def registry() -> str:
    """The local registry on 127.0.0.1:5000 holding the test image (started if needed)."""
    subprocess.run(
        ["bash", str(ROOT / "infra/setup/registry.sh")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return REGISTRY_IMAGE


@pytest.fixture
async def executor(tmp_path: Path) -> AsyncIterator[CommandExecutor]:
    """An executor whose Docker engine cannot be reached (for what happens before it)."""
    journal, desired = CommandJournal(tmp_path), DesiredState(tmp_path)
    async with DockerRuntime(url="unix:///nonexistent/docker.sock", timeout_s=2) as runtime:
        yield CommandExecutor(runtime=runtime, journal=journal, desired=desired)
    journal.close()
    desired.close()


def joined_uplink(session: Any, key: str) -> Uplink:
    """Node ``key``'s uplink as if joined, over ``session`` (a test's stand-in for
    autobahn's)."""
    uplink = Uplink(
        url="ws://127.0.0.1:1/ws",
        realm="edgecloud",
        login=Login(device_key=key, private_key=bytes(32), enrolment_token=None),
        backoff=Backoff(0.1, 1),
    )
    uplink._session = session  # as if joined
    return uplink
