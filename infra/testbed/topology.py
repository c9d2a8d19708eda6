"""The plan of a testbed run: its nodes, links, names and addresses. No side effects here;
:mod:`infra.testbed.testbed` builds the plan.

Run ``R`` (four hex digits) with cloud-side subnet ``X``:

- node ``nN`` is the namespace ``ectb-R-nN``; its ``wan0`` (10.X.0.(10+N), fdec:R::(10+N)) is a
  veth whose other end, ``ectbRnN``, is a port of the bridge ``ectbR`` (10.X.0.1, fdec:R::1);
- lowpan link ``K`` is fdec:R:K::/64, node ``nN`` is fdec:R:K::N on it; each node names its
  lowpan interfaces ``lowpan0``, ``lowpan1``... in the order of the links.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from infra.testbed.daemons import Engine

PREFIX = "ectb"
MQTT_PORT = 1883
INTERNET_IP = "203.0.113.1"
"""A stand-in for the Internet (TEST-NET-3, a public-looking address no node is on): a
namespace of the run's own, reached from the nodes through the cloud side."""
INTERNET_NET = "203.0.113.0/24"
INTERNET_GATEWAY = "203.0.113.254"
RELAY_PORT = 8099
LOWPAN_MTU = 1280


@dataclass(frozen=True)
class Node:
    run: str
    number: int
    subnet: int
    directory: Path

    @property
    def name(self) -> str:
        return f"n{self.number}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.run}-{self.name}"

    @property
    def wan_end(self) -> str:
        """The root namespace's end of the node's ``wan0`` (at most 15 characters)."""
        return f"{PREFIX}{self.run}{self.name}"

    @property
    def wan_ip(self) -> str:
        return f"10.{self.subnet}.0.{10 + self.number}"

    @property
    def wan_ip6(self) -> str:
        return f"fdec:{self.run}::{10 + self.number}"

    @property
    def mac(self) -> str:
        """Locally administered and unique per run and node: the agent's device id uses it."""
        return f"02:ec:{self.run[:2]}:{self.run[2:]}:00:{self.number:02x}"

    @property
    def engine(self) -> Engine:
        return Engine(self.directory / "docker")

    @property
    def state_dir(self) -> Path:
        return self.directory / "agent"


NodeRef: TypeAlias = str | int | Node
"""A node, its name (``n1``) or its number."""


@dataclass(frozen=True)
class LinkEnd:
    """One node's view of a lowpan link."""

    near: Node
    interface: str
    far: Node
    address: str
    """``near``'s address on the link, without prefix length."""


@dataclass(frozen=True)
class Link:
    index: int
    a: LinkEnd
    b: LinkEnd

    def ends(self) -> tuple[LinkEnd, LinkEnd]:
        return self.a, self.b


def plan_links(nodes: Sequence[Node], pairs: Sequence[tuple[int, int]]) -> list[Link]:
    by_number = {node.number: node for node in nodes}
    seen: set[frozenset[int]] = set()
    next_interface = dict.fromkeys(by_number, 0)
    links = []
    for index, (a, b) in enumerate(pairs, start=1):
        if a not in by_number or b not in by_number or a == b:
            raise ValueError(f"link {a}-{b}: needs two different nodes of 1..{len(nodes)}")
        if frozenset((a, b)) in seen:
            raise ValueError(f"link {a}-{b} is given twice")
        seen.add(frozenset((a, b)))
        ends = []
        for near, far in ((a, b), (b, a)):
            node = by_number[near]
            interface = f"lowpan{next_interface[near]}"
            next_interface[near] += 1
            address = f"fdec:{node.run}:{index:x}::{near}"
            ends.append(LinkEnd(node, interface, by_number[far], address))
        links.append(Link(index, ends[0], ends[1]))
    return links


def parse_links(text: str) -> list[tuple[int, int]]:
    """``"1-2,2-3"`` -> ``[(1, 2), (2, 3)]``."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        a, _, b = item.partition("-")
        pairs.append((int(a.lstrip("n")), int(b.lstrip("n"))))
    return pairs


class Topology:
    """Who is where in one run, and what an agent on each node needs to know."""

    def __init__(
        self,
        nodes: int,
        *,
        links: Sequence[tuple[int, int]] | None,
        run: str,
        workdir: Path,
        subnet: int,
        router_port: int,
        api_port: int,
        lowpan_rate_kbit: int,
        lowpan_loss: float,
        tls: bool = False,
    ) -> None:
        self.run = run
        self.workdir = workdir
        self.subnet = subnet
        self.router_port = router_port
        self.api_port = api_port
        self.lowpan_rate_kbit = lowpan_rate_kbit
        self.lowpan_loss = lowpan_loss
        self.tls = tls
        """The cloud side serves wss:// and https:// (a certificate naming :attr:`cloud_ip`)."""
        self.nodes = [
            Node(run=run, number=n, subnet=subnet, directory=workdir / f"n{n}")
            for n in range(1, nodes + 1)
        ]
        pairs = [(n, n + 1) for n in range(1, nodes)] if links is None else list(links)
        self.links = plan_links(self.nodes, pairs)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.run}"

    @property
    def cloud_ip(self) -> str:
        return f"10.{self.subnet}.0.1"

    @property
    def internet_netns(self) -> str:
        return f"{PREFIX}-{self.run}-net"

    @property
    def internet_end(self) -> str:
        """The root namespace's end of the link to the Internet stand-in."""
        return f"{PREFIX}{self.run}net"

    @property
    def forward_chain(self) -> str:
        """The root namespace's chain that lets the run's traffic through whatever the
        FORWARD policy (Docker turns it to DROP when it enables forwarding itself)."""
        return f"{PREFIX}-{self.run}-fwd"

    @property
    def cloud_ip6(self) -> str:
        return f"fdec:{self.run}::1"

    @property
    def router_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.cloud_ip}:{self.router_port}/ws"

    @property
    def api_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.cloud_ip}:{self.api_port}"

    def node(self, name: NodeRef) -> Node:
        for node in self.nodes:
            if name in (node, node.name, node.number):
                return node
        raise LookupError(f"run {self.run} has no node {name!r}")

    def link_ends(self, node: NodeRef) -> list[LinkEnd]:
        """The node's lowpan links, in the order of its interfaces."""
        here = self.node(node)
        return [end for link in self.links for end in link.ends() if end.near == here]

    def neighbours(self, node: NodeRef) -> list[Node]:
        return [end.far for end in self.link_ends(node)]

    def lowpan_address(self, node: NodeRef, neighbour: NodeRef) -> str:
        """``node``'s IPv6 address on the lowpan link it shares with ``neighbour``."""
        there = self.node(neighbour)
        for end in self.link_ends(node):
            if end.far == there:
                return end.address
        raise LookupError(f"{self.node(node).name} and {there.name} share no lowpan link")

    def neighbour_address(self, node: NodeRef, neighbour: NodeRef) -> str:
        """Where ``node`` reaches ``neighbour``: the neighbour's address on their link."""
        return self.lowpan_address(neighbour, node)

    def agent_env(self, node: NodeRef, *, token: str | None = None) -> dict[str, str]:
        """What an agent on the node needs to find its engine, broker and the cloud side."""
        here = self.node(node)
        env = {
            "AGENT_ROUTER_URL": self.router_url,
            "AGENT_API_URL": self.api_url,
            "AGENT_DOCKER_URL": here.engine.url,
            "AGENT_MQTT_URL": f"mqtt://127.0.0.1:{MQTT_PORT}",
            # Peers reach the node's broker over the WAN bridge for migrations.
            "AGENT_PEER_URL": f"mqtt://{here.wan_ip}:{MQTT_PORT}",
            "AGENT_STATE_DIR": str(here.state_dir),
            "AGENT_HOSTNAME": here.name,
            "AGENT_MAC": here.mac,
            "AGENT_LOCATION": f"testbed {self.run}",
        }
        if token:
            env["AGENT_ENROLMENT_TOKEN"] = token
        return env

    def fusion_env(
        self, node: NodeRef, *, via: NodeRef | None = None, relay_port: int = RELAY_PORT
    ) -> dict[str, str]:
        """The fusion link's settings: the WAN first, then the router through the relay of
        ``via`` (the node's first neighbour by default), TLS ending at the router when the
        cloud side serves it; the node's own relay listens on all its addresses. Peers reach
        its broker over the WAN, then over the mesh at its address on the link to its first
        neighbour."""
        uplinks = [f"wan={self.router_url}"]
        here = self.node(node)
        brokers = [f"wan=mqtt://{here.wan_ip}:{MQTT_PORT}"]
        neighbours = self.neighbours(node)
        if via is not None or neighbours:
            relay = self.neighbour_address(node, via if via is not None else neighbours[0])
            uplinks.append(f"lowpan={self.router_url} via [{relay}]:{relay_port}")
        if neighbours:
            mesh = self.lowpan_address(here, neighbours[0])
            brokers.append(f"lowpan=mqtt://[{mesh}]:{MQTT_PORT}")
        return {
            "AGENT_UPLINKS": ",".join(uplinks),
            "AGENT_RELAY_LISTEN": f"[::]:{relay_port}",
            "AGENT_PEER_URLS": ",".join(brokers),
        }

    def describe(self) -> dict[str, Any]:
        """Addresses of everything, for people (the CLI's status) and logs."""
        return {
            "run": self.run,
            "cloud": {"bridge": self.bridge, "ipv4": self.cloud_ip, "ipv6": self.cloud_ip6},
            "internet": {"netns": self.internet_netns, "ipv4": INTERNET_IP},
            "router_url": self.router_url,
            "api_url": self.api_url,
            "nodes": {
                node.name: {
                    "netns": node.netns,
                    "wan0": [node.wan_ip, node.wan_ip6],
                    "lowpan": {
                        end.interface: [end.address, end.far.name] for end in self.link_ends(node)
                    },
                    "docker": node.engine.url,
                }
                for node in self.nodes
            },
        }


def new_run_id(taken: "set[str]") -> str:
    while (run := secrets.token_hex(2)) in taken:
        pass
    return run
