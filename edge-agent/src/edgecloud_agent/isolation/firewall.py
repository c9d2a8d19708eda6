"""The node's firewall around tenant networks (iptables and ip6tables).

Docker keeps tenant networks from each other, but leaves every container free to reach the
node itself on any of its addresses (the agent's relay, the broker, a Docker API port, SSH)
and anything the node can route to (its LAN, the mesh, other nodes). The agent's own chains
close that, for packets coming in from a tenant bridge (``ectn+``) only:

EDGECLOUD-INPUT, first in INPUT
    replies pass; the broker's listener for containers passes; everything else to the node
    is dropped.
EDGECLOUD-FORWARD, first in DOCKER-USER (where Docker wants its users' rules)
    replies pass; traffic between two tenant bridges is left to Docker (the same bridge:
    one tenant's own containers; two bridges: Docker's isolation drops it); DNS to the
    node's own resolvers passes (Docker's embedded resolver forwards from the container's
    network); private, shared, link-local, multicast and reserved destinations and the
    node's own subnets are dropped (the LAN, the mesh, the cloud side, other nodes); the
    rest, the Internet, passes unless the operator turned it off.
IPv6: tenant networks have none, so everything from a tenant bridge, to the node or through
    it, is dropped.

The chains are rewritten whole (``iptables-restore --noflush``) at start and whenever a
check finds them changed: what runs is what this module says, with nothing left of an older
version. Nothing is removed when the agent stops: the containers keep running.
"""

import asyncio
import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.errors import PolicyRefused
from . import commands
from .networks import BRIDGE_PREFIX

logger = logging.getLogger(__name__)

INPUT_CHAIN = "EDGECLOUD-INPUT"
FORWARD_CHAIN = "EDGECLOUD-FORWARD"
TENANT_BRIDGES = f"{BRIDGE_PREFIX}+"
NOT_THE_INTERNET = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
"""Addresses a tenant has no business reaching from a node: they are someone's LAN."""
RESOLV_FILES = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))
COMMAND_TIMEOUT_S = 20.0


class FirewallError(PolicyRefused):
    """The node's rules could not be put in place: no tenant network may be used."""


@dataclass(frozen=True, slots=True)
class FirewallPolicy:
    """What the node's operator decided, and what the node is."""

    broker: tuple[str, int] | None = None
    """Where containers reach the node's broker (host address, port); None: nowhere."""
    internet: bool = True
    extra_blocked: Sequence[str] = ()
    """More destinations tenants may not reach (CIDRs), beyond every private range."""
    resolvers: Sequence[str] = field(default_factory=tuple)
    local_subnets: Sequence[str] = field(default_factory=tuple)


def ipv4_rules(policy: FirewallPolicy) -> str:
    """The ``iptables-restore`` input for the filter table's two chains."""
    t = TENANT_BRIDGES
    lines = [
        "*filter",
        f":{INPUT_CHAIN} - [0:0]",
        f":{FORWARD_CHAIN} - [0:0]",
        f"-A {INPUT_CHAIN} -i {t} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    if policy.broker is not None:
        host, port = policy.broker
        lines.append(f"-A {INPUT_CHAIN} -i {t} -d {host}/32 -p tcp --dport {port} -j ACCEPT")
    lines += [
        f"-A {INPUT_CHAIN} -i {t} -j DROP",
        f"-A {FORWARD_CHAIN} -i {t} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {FORWARD_CHAIN} -i {t} -o {t} -j RETURN",
    ]
    for resolver in policy.resolvers:
        for protocol in ("udp", "tcp"):
            lines.append(
                f"-A {FORWARD_CHAIN} -i {t} -d {resolver}/32 -p {protocol} --dport 53 -j RETURN"
            )
    blocked = [*NOT_THE_INTERNET, *policy.local_subnets, *policy.extra_blocked]
    for network in dict.fromkeys(blocked):
        lines.append(f"-A {FORWARD_CHAIN} -i {t} -d {network} -j DROP")
    if not policy.internet:
        lines.append(f"-A {FORWARD_CHAIN} -i {t} -j DROP")
    lines.append(f"-A {FORWARD_CHAIN} -i {t} -j RETURN")
    return "\n".join([*lines, "COMMIT", ""])


def ipv6_rules() -> str:
    t = TENANT_BRIDGES
    return "\n".join(
        [
            "*filter",
            f":{INPUT_CHAIN} - [0:0]",
            f":{FORWARD_CHAIN} - [0:0]",
            f"-A {INPUT_CHAIN} -i {t} -j DROP",
            f"-A {FORWARD_CHAIN} -i {t} -j DROP",
            "COMMIT",
            "",
        ]
    )


def resolvers(files: Sequence[Path] = RESOLV_FILES) -> list[str]:
    """The node's IPv4 name servers (those Docker forwards tenant lookups to)."""
    found: list[str] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(words[1])
                except ValueError:
                    continue
                if address.version == 4 and not address.is_loopback:
                    found.append(str(address))
    return list(dict.fromkeys(found))


class NodeFirewall:
    """Puts the chains in place and keeps them there."""

    def __init__(self, policy: FirewallPolicy) -> None:
        self._policy = policy
        self._applied: FirewallPolicy | None = None
        self.ready = False
        """True once the rules are in place: tenant networks are used only then."""

    @property
    def policy(self) -> FirewallPolicy:
        return self._policy

    async def apply(self) -> None:
        """Write both families' chains and make sure they are jumped to; raise
        :class:`FirewallError` if that cannot be done."""
        policy = FirewallPolicy(
            broker=self._policy.broker,
            internet=self._policy.internet,
            extra_blocked=tuple(self._policy.extra_blocked),
            resolvers=tuple(self._policy.resolvers) or tuple(resolvers()),
            local_subnets=tuple(self._policy.local_subnets) or tuple(await local_subnets()),
        )
        try:
            await _run(["iptables-restore", "-w", "--noflush"], stdin=ipv4_rules(policy))
            # Docker makes DOCKER-USER when it manages iptables; an engine that does not
            # still forwards: then FORWARD itself.
            await _jump_first("iptables", "INPUT", INPUT_CHAIN)
            await _jump_first("iptables", await _forward_hook(), FORWARD_CHAIN)
            await _run(["ip6tables-restore", "-w", "--noflush"], stdin=ipv6_rules())
            await _jump_first("ip6tables", "INPUT", INPUT_CHAIN)
            await _jump_first("ip6tables", "FORWARD", FORWARD_CHAIN)
        except (OSError, FirewallError) as err:
            self.ready = False
            raise FirewallError(f"the node firewall could not be put in place: {err}") from err
        if self._applied != policy:
            logger.info(
                "node firewall in place: tenant networks reach %s; blocked %s",
                "the Internet" if policy.internet else "nothing beyond the node's broker",
                ", ".join([*policy.local_subnets, *policy.extra_blocked]) or "private ranges",
            )
        self._applied = policy
        self.ready = True

    async def intact(self) -> bool:
        """Whether the jumps to our chains are still there (an operator's flush, a
        firewall service reloading its own rules)."""
        checks = [
            ("iptables", "INPUT", INPUT_CHAIN),
            ("ip6tables", "INPUT", INPUT_CHAIN),
            ("ip6tables", "FORWARD", FORWARD_CHAIN),
        ]
        checks.append(("iptables", await _forward_hook(), FORWARD_CHAIN))
        for family, chain, target in checks:
            if not await _rule_exists(family, chain, ["-j", target]):
                return False
        return True

    async def watch(self, every_s: float = 30.0) -> None:
        """Put the rules in place if they could not be at start, and back whenever they
        went missing; runs until cancelled."""
        while True:
            await asyncio.sleep(every_s if self.ready else min(every_s, 5.0))
            try:
                if not self.ready:
                    await self.apply()
                elif not await self.intact():
                    logger.error("the node firewall's rules went missing: putting them back")
                    await self.apply()
            except FirewallError as err:
                logger.error("%s", err.message)


async def local_subnets() -> list[str]:
    """The IPv4 subnets the node is directly on (its LAN, its WAN, the mesh), but tenant
    bridges and Docker's own."""
    try:
        out = await _run(["ip", "-j", "-4", "route", "show", "scope", "link"])
    except FirewallError:
        return []
    found = []
    for route in json.loads(out or "[]"):
        device, destination = str(route.get("dev", "")), str(route.get("dst", ""))
        if device.startswith(BRIDGE_PREFIX) or device == "docker0" or device.startswith("br-"):
            continue
        try:
            found.append(str(ipaddress.ip_network(destination, strict=False)))
        except ValueError:
            continue
    return found


async def _forward_hook() -> str:
    """Docker makes DOCKER-USER when it manages iptables; an engine that does not still
    forwards, and then FORWARD itself is where our rules go."""
    return "DOCKER-USER" if await _chain_exists("iptables", "DOCKER-USER") else "FORWARD"


async def _chain_exists(family: str, chain: str) -> bool:
    try:
        await _run([family, "-w", "-n", "-L", chain])
    except FirewallError:
        return False
    return True


async def _rule_exists(family: str, chain: str, rule: list[str]) -> bool:
    try:
        await _run([family, "-w", "-C", chain, *rule])
    except FirewallError:
        return False
    return True


async def _jump_first(family: str, chain: str, target: str) -> None:
    """``-j target`` as the chain's first rule, exactly once (inserted before any older
    copy is deleted: the chain is never without it)."""
    jump = f"-A {chain} -j {target}"
    if _positions(await _run([family, "-w", "-S", chain]), jump) == [1]:
        return
    await _run([family, "-w", "-I", chain, "1", "-j", target])
    for position in reversed(_positions(await _run([family, "-w", "-S", chain]), jump)[1:]):
        await _run([family, "-w", "-D", chain, str(position)])


def _positions(listing: str, rule: str) -> list[int]:
    rules = [line.strip() for line in listing.splitlines() if line.startswith("-A ")]
    return [number for number, found in enumerate(rules, start=1) if found == rule]


async def _run(argv: list[str], *, stdin: str | None = None) -> str:
    return await commands.run(argv, error=FirewallError, timeout_s=COMMAND_TIMEOUT_S, stdin=stdin)
