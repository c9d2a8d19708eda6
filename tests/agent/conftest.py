"""Fixtures for the agent's tests against the machine's real Docker engine, which runs with
Docker's defaults (its bridge and iptables on) as on a node; the agent's isolation
(edgecloud_agent.isolation: tenant networks, the node firewall, /app disks, the node
broker's identities) is the real one too.

Containers get unique names (``t-<random>``) and are removed after each test, whatever
happened, with everything the node gave them.
"""

import json
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.agent import tenant_share
from edgecloud_agent.broker.control import DynsecAdmin
from edgecloud_agent.broker.identities import BrokerIdentities
from edgecloud_agent.broker.setup import read_admin_secret
from edgecloud_agent.deploy.commands import CommandExecutor
from edgecloud_agent.isolation.cgroups import Cgroups
from edgecloud_agent.isolation.disks import AppDisks
from edgecloud_agent.isolation.firewall import FirewallPolicy, NodeFirewall
from edgecloud_agent.isolation.images import TenantImages
from edgecloud_agent.isolation.networks import TenantNetworks
from edgecloud_agent.isolation.provision import BrokerAddress, Provisioner
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.runtime.hardening import ContainerPolicy
from edgecloud_agent.settings import AgentSettings
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.state.journal import CommandJournal
from edgecloud_agent.uplink.wamp import Backoff, Login, Uplink
from edgecloud_contracts.containers import (
    MIB,
    Action,
    Command,
    ContainerReport,
    ContainerSpec,
    Limits,
    PullProgress,
)
from tests.support.agents import release_disks
from tests.support.brokers import NodeBroker

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "edgecloud/busybox:latest"
REGISTRY_IMAGE = "127.0.0.1:5000/edgecloud/busybox:1.0"


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
    async with DockerRuntime(timeout_s=20, pull_timeout_s=60, policy=ContainerPolicy()) as opened:
        yield opened


async def isolation(
    runtime: DockerRuntime, state_dir: Path, broker: NodeBroker | None = None
) -> Provisioner:
    """The node's isolation as the agent sets it up, in ``state_dir`` (the firewall's
    rules are the machine's own, as on a node)."""
    identities = address = None
    if broker is not None:
        broker.admin_env(state_dir)
        secret = read_admin_secret(broker.secret_file)
        assert secret is not None
        admin = DynsecAdmin(url=broker.url, username="edgecloud-agent", password=secret)
        identities = BrokerIdentities(admin=admin, state_dir=state_dir)
        address = BrokerAddress(broker.container_host, broker.port)
    firewall = NodeFirewall(
        FirewallPolicy(broker=(address.host, address.port) if address is not None else None)
    )
    await firewall.apply()
    cgroups = Cgroups(runtime)
    return Provisioner(
        runtime=runtime,
        images=TenantImages(
            runtime=runtime, cgroups=cgroups, state_dir=state_dir, work_dir=state_dir / "images"
        ),
        networks=TenantNetworks(runtime),
        firewall=firewall,
        disks=AppDisks(runtime=runtime, root=state_dir / "disks", reserve_bytes=64 * MIB),
        identities=identities,
        broker=address,
        cgroups=cgroups,
        tenant_share=tenant_share(AgentSettings(state_dir=state_dir)),
    )


@pytest.fixture
async def provisioner(
    runtime: DockerRuntime, tmp_path: Path, node_broker: NodeBroker
) -> AsyncIterator[Provisioner]:
    """The node's isolation in a state directory of the test's own."""
    state_dir = tmp_path / "node"
    made = await isolation(runtime, state_dir, node_broker)
    yield made
    made.images.close()
    if made.identities is not None:
        made.identities.close()
    release_disks(state_dir)
    # The tenants' networks the test's containers left (the agent removes a network with
    # its tenant's last container; these containers went behind its back).
    for network in docker(
        "network", "ls", "-q", "--filter", "label=edgecloud.managed=true"
    ).stdout.split():
        docker("network", "rm", network)  # refused while a container still uses it


@pytest.fixture
def create(provisioner: Provisioner) -> Callable[[ContainerSpec], Any]:
    """Create (not start) a container as the node would: its image resolved for its tenant
    (pulled if missing), then provisioned."""

    async def make(spec: ContainerSpec) -> ContainerReport:
        image_id = await provisioner.images.find(spec)
        if image_id is None:
            image_id = await provisioner.images.pull(spec.image)
        return await provisioner.create(spec, image_id)

    return make


class Node:
    """An executor with its journal and desired state in one state directory."""

    def __init__(self, provisioner: Provisioner, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pulls: list[PullProgress] = []
        self.journal = CommandJournal(state_dir)
        self.desired = DesiredState(state_dir)
        self.node = provisioner
        self.executor = CommandExecutor(
            node=provisioner,
            journal=self.journal,
            desired=self.desired,
            stop_timeout_s=1,
            on_pull=self.pulls.append,
        )

    def close(self) -> None:
        self.journal.close()
        self.desired.close()


@pytest.fixture
def node_factory(provisioner: Provisioner, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    opened: list[Node] = []

    def make(state_dir: Path | None = None, node: Provisioner | None = None) -> Node:
        opened.append(Node(node or provisioner, state_dir or tmp_path / "state"))
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
        cgroups = Cgroups(runtime)
        node = Provisioner(
            runtime=runtime,
            images=TenantImages(
                runtime=runtime, cgroups=cgroups, state_dir=tmp_path, work_dir=tmp_path / "i"
            ),
            networks=TenantNetworks(runtime),
            firewall=NodeFirewall(FirewallPolicy()),
            disks=AppDisks(runtime=runtime, root=tmp_path / "disks", reserve_bytes=0),
            identities=None,
            broker=None,
            cgroups=cgroups,
            tenant_share=None,
        )
        yield CommandExecutor(node=node, journal=journal, desired=desired)
        node.images.close()
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
