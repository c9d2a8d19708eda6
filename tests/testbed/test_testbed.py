"""The testbed itself: nodes that enrol over their WAN, containers in each node's own engine,
lowpan links that behave like 6LoWPAN, cuts that make packets vanish, and a teardown that
leaves nothing behind."""

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from infra.testbed import daemons, network
from infra.testbed.testbed import Testbed
from tests.conftest import eventually
from tests.integration.conftest import docker as host_docker
from tests.integration.conftest import online
from tests.support.agents import AgentHandle
from tests.support.processes import PYTHON, ROOT
from tests.support.stack import Stack
from tests.support.testbed import TestbedFleet
from tests.support.users import register

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"


async def start_online(
    testbed: TestbedFleet, api: httpx.AsyncClient, enrol, node: str
) -> AgentHandle:
    agent = testbed.start_agent(node, token=await enrol())
    await eventually(lambda: online(api, agent.key), timeout=30, interval=0.2)
    return agent


async def test_three_nodes_enrol_and_come_online_over_their_wan(testbed, api, enrol) -> None:
    agents = [testbed.start_agent(node.name, token=await enrol()) for node in testbed.bed.nodes]
    for agent in agents:
        await eventually(lambda agent=agent: online(api, agent.key), timeout=30, interval=0.2)
        device = (await api.get(f"/api/v1/devices/{agent.key}")).json()
        node = testbed.bed.node(agent.hostname)
        assert device["id"] == f"{node.name}/{node.mac}"
        assert device["location"] == f"testbed {testbed.bed.run}"
    # Each agent runs inside its own node's network, not the machine's.
    for agent in agents:
        node = testbed.bed.node(agent.hostname)
        assert agent.process.pid in [p.pid for p in daemons.processes(node.netns, {"agent"})]


async def test_a_container_runs_in_its_own_nodes_engine(
    testbed, stack: Stack, api, enrol, client
) -> None:
    agent = await start_online(testbed, api, enrol, "n2")
    user = await register(stack)
    granted = await api.post(f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id})
    assert granted.status_code == 201, granted.text

    made = await client.post(
        "/api/v1/containers",
        json={"device": agent.key, "name": "probe", "image": IMAGE, "command": ["sleep", "600"]},
        headers=user.headers,
    )
    assert made.status_code == 201, made.text
    name = made.json()["name"]

    running = testbed.bed.docker("n2", "ps", "--format", "{{.Names}}").stdout.split()
    assert name in running
    assert name not in testbed.bed.docker("n1", "ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert name not in host_docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    # The image came from the tar the testbed loaded: the node cannot reach any registry.
    # The container is on its tenant's network in the node's own engine (Docker's defaults).
    inspected = json.loads(testbed.bed.docker("n2", "inspect", name).stdout)[0]
    assert inspected["HostConfig"]["NetworkMode"].startswith("edgecloud-t-")


LISTEN_PORT = 2222
LISTENER = ROOT / "tests" / "support" / "listener.py"


@contextlib.contextmanager
def listening(bed: Testbed, node: str, address: str) -> Iterator[int]:
    """A listener on ``address`` in the node's namespace for the block; its port."""
    server = subprocess.Popen(
        [*bed.nsenter(node), str(PYTHON), str(LISTENER), address, str(LISTEN_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        yield LISTEN_PORT
    finally:
        server.kill()
        server.wait(5)
        if server.stdout is not None:
            server.stdout.close()


def test_a_lowpan_link_is_slow_small_and_ipv6_only(testbed) -> None:
    bed = testbed.bed
    state = bed.status()["nodes"]
    for node, interface in (("n1", "lowpan0"), ("n2", "lowpan0"), ("n2", "lowpan1")):
        link = state[node]["links"][interface]
        assert link["mtu"] == 1280
        assert link["rate_kbit"] == 250
        assert link["loss"] == pytest.approx(0.02)
        [address] = [a for a in link["addresses"] if not a.startswith("fe80")]
        assert re.fullmatch(r"fdec:[0-9a-f]{1,4}:\d+::\d/64", address), address
    assert state["n1"]["links"]["wan0"]["mtu"] == 1500

    # 100 kB at 250 kbit/s is 3.2 s at best; a WAN-like link would take a fraction of one.
    seconds = bed.transfer("n1", "n2", 100_000)
    assert 2 < seconds < 60, seconds

    # Degraded to total loss, nothing crosses; reset, the link carries again.
    neighbour = bed.neighbour_address("n1", "n2")
    with listening(bed, "n2", neighbour) as port:
        bed.degrade("n1", "n2", loss=1.0)
        assert bed.connect("n1", neighbour, port, timeout=1.5) == "timeout"
        bed.reset_links()
        assert bed.connect("n1", neighbour, port) == "connected"


def test_a_cut_wan_swallows_packets_until_restored(testbed, stack: Stack) -> None:
    bed = testbed.bed
    router = stack.router_port
    assert bed.connect("n1", bed.cloud_ip, router) == "connected"

    bed.cut("n1", "wan")
    # No RST, no ICMP: the connection attempt just hangs, as on a dead radio link.
    assert bed.connect("n1", bed.cloud_ip, router, timeout=1.5) == "timeout"
    assert bed.connect("n2", bed.cloud_ip, router) == "connected"
    # The mesh is untouched: n1 still reaches its neighbour.
    neighbour = bed.neighbour_address("n1", "n2")
    with listening(bed, "n2", neighbour) as port:
        assert bed.connect("n1", neighbour, port) == "connected"
    assert bed.status()["nodes"]["n1"]["links"]["wan0"]["cut"] is True

    bed.restore("n1", "wan")
    assert bed.connect("n1", bed.cloud_ip, router) == "connected"

    bed.link_down("n1", "wan")
    assert bed.connect("n1", bed.cloud_ip, router, timeout=1.5) != "connected"
    bed.link_up("n1", "wan")
    assert bed.connect("n1", bed.cloud_ip, router) == "connected"


def test_teardown_leaves_nothing_behind(tmp_path) -> None:
    bed = Testbed(2, logs_dir=tmp_path / "logs")
    with bed:
        started = bed.docker("n1", "run", "-d", "--network", "none", IMAGE, "sleep", "600")
        assert started.returncode == 0, started.stderr
        inspected = json.loads(bed.docker("n1", "inspect", started.stdout.strip()).stdout)[0]
        container_pid = inspected["State"]["Pid"]
        assert daemons.alive(container_pid)
        # The two nodes and the Internet stand-in.
        assert len(network.namespaces(f"ectb-{bed.run}-")) == 3

    assert network.namespaces(f"ectb-{bed.run}-") == []
    assert network.interfaces(prefix=f"ectb{bed.run}") == []
    # (The module's other testbed is still up, with rules of its own.)
    assert network.root_rules(f"ectb-{bed.run}") + network.root_rules(f"ectb{bed.run}") == []
    assert network.mounts_under(bed.workdir) == []
    assert not bed.workdir.exists()
    assert bed.run not in Testbed.runs()
    assert not daemons.alive(container_pid)
    # Only the logs stay, where they were asked to.
    assert (tmp_path / "logs" / "n1" / "dockerd.log").exists()
