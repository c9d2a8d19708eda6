"""The multi-node testbed in tests (infra/testbed): simulated nodes, each a network namespace
with its own Docker engine and Mosquitto broker, real agents on them, links to cut and degrade.

A test folder turns it on in its conftest.py::

    from tests.support.testbed import reachable_stack, testbed, testbed_network, testbed_nodes

``stack`` then means a cloud side listening on every address (the nodes reach it at the
bridge's address), on SQLite unless parametrized with ``indirect=True``. A module builds its
nodes once (``testbed_network``; override ``testbed_nodes`` for another count); each test gets
them back with its agents stopped, its containers removed and every link as built. A module
with a cloud side of its own (``reachable_stack_of_module``) may give it settings of its own by
overriding ``testbed_stack_env``.
"""

from collections.abc import Iterator, Mapping

import pytest

from infra.testbed.testbed import Testbed
from infra.testbed.topology import NodeRef

from .agents import HEARTBEAT_INTERVAL_S, AgentFactory, AgentHandle, release_disks
from .stack import Stack

__all__ = [
    "TestbedFleet",
    "reachable_stack",
    "reachable_stack_of_module",
    "testbed",
    "testbed_network",
    "testbed_nodes",
    "testbed_stack_env",
]


class TestbedFleet:
    """What a test drives: real agents on the nodes, started the way tests/support/agents.py
    starts any, and the nodes themselves as ``bed`` (a :class:`Testbed`: link controls,
    ``docker``, ``exec``, probes, addresses, status)."""

    __test__ = False  # pytest: a class named Test... that is not a test

    def __init__(self, bed: Testbed, agents: AgentFactory) -> None:
        self.bed = bed
        self.agents = agents
        self._on: dict[str, AgentHandle] = {}

    def start_agent(
        self,
        node: NodeRef,
        *,
        token: str | None = None,
        fusion: bool = False,
        env: Mapping[str, str] | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> AgentHandle:
        """Start the node's agent (the node's identity and state directory stay the same
        from one start to the next: ``token`` is needed only the first time). ``fusion``
        adds the uplinks (WAN, then the first neighbour's relay) and the node's own relay;
        ``env`` comes last and wins."""
        here = self.bed.node(node)
        extra = self.bed.agent_env(here)
        if fusion:
            extra |= self.bed.fusion_env(here)
        handle = self.agents.start(
            token=token,
            hostname=here.name,
            mac=here.mac,
            state_dir=here.state_dir,
            heartbeat_interval_s=heartbeat_interval_s,
            extra_env=extra | dict(env or {}),
            prefix_command=self.bed.nsenter(here),
        )
        self._on[here.name] = handle
        return handle

    def agent(self, node: NodeRef) -> AgentHandle:
        """The agent last started on the node."""
        return self._on[self.bed.node(node).name]

    def stop_agent(self, node: NodeRef) -> None:
        self.agent(node).process.stop()

    def reset(self) -> None:
        """Back to the nodes as built: no agent, no container, every link as it was."""
        self.agents.stop_all()
        self._on.clear()
        for node in self.bed.nodes:
            node.engine.remove_containers()
            release_disks(node.state_dir)
        self.bed.reset_links()


@pytest.fixture(name="stack", scope="session", params=["sqlite"])
def reachable_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The cloud side on every address of this machine, so the nodes reach it at the bridge's
    address (the URLs the tests use stay on 127.0.0.1)."""
    yield from _reachable(request, tmp_path_factory)


@pytest.fixture(name="stack", scope="module", params=["sqlite"])
def reachable_stack_of_module(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    testbed_stack_env: dict[str, str],
) -> Iterator[Stack]:
    """The same, for one module alone: a module whose tests must not see the nodes of
    other modules (whose teardown silences them all at once, as an outage would), with the
    module's ``testbed_stack_env``."""
    yield from _reachable(request, tmp_path_factory, testbed_stack_env)


@pytest.fixture(scope="module")
def testbed_stack_env() -> dict[str, str]:
    """Settings of a module's own cloud side (e.g. a shorter node loss window); a module
    may override it."""
    return {}


def _reachable(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"testbed-stack-{request.param}")
    started = Stack(
        backend=request.param,
        workdir=workdir,
        listen_host="0.0.0.0",
        extra_env=dict(extra_env or {}),
    )
    with started.running():
        yield started


@pytest.fixture(scope="module")
def testbed_nodes() -> int:
    """How many nodes a module's testbed has (a line n1-n2-...); a module may override it."""
    return 3


@pytest.fixture(scope="module")
def testbed_network(
    stack: Stack, testbed_nodes: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Testbed]:
    """The nodes, links, engines and brokers of one module, torn down after it whatever
    happened; their logs are kept in the test's temporary directory."""
    logs = tmp_path_factory.mktemp("testbed-logs")
    bed = Testbed(
        testbed_nodes,
        router_port=stack.router_port,
        api_port=stack.ports["gateway"],
        logs_dir=logs,
    )
    with bed:
        yield bed


@pytest.fixture
def testbed(
    testbed_network: Testbed, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestbedFleet]:
    fleet = TestbedFleet(testbed_network, AgentFactory(stack, tmp_path_factory.mktemp("tb")))
    try:
        yield fleet
    finally:
        fleet.reset()
