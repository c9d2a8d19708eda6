"""The testbed's emulated network, one command at a time: namespaces, veth links, shaping and
the firewall chains that cut a link or drop a share of its packets.

Everything shells out to iproute2, tc and iptables-restore. Each interface X that the testbed
controls gets two chains of its own in its namespace, in both address families:
``ectb-cut-X`` (empty, or one DROP: the link is cut) and ``ectb-loss-X`` (empty, or one
random DROP: the link loses that share of packets). Changing a control rewrites its chain, so
no caller has to remember which rule it added.
"""

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/var/run/netns")
FAMILIES = ("iptables", "ip6tables")
# tbf needs a burst of at least one MTU-sized packet plus headroom; 200 ms of queue at the
# most, as a real radio link would drop rather than buffer for longer.
TBF_BURST = "4kb"
TBF_LATENCY = "200ms"


class TestbedError(RuntimeError):
    """A testbed command failed; ``argv`` and ``output`` say which and why."""

    def __init__(self, message: str, *, argv: Sequence[str] = (), output: str = "") -> None:
        command = f": {' '.join(argv)}" if argv else ""
        super().__init__(f"{message}{command}\n{output}".rstrip())
        self.argv = list(argv)
        self.output = output


def nsenter(netns: str) -> list[str]:
    """The prefix that runs a command in a namespace's network only (not its mounts)."""
    return ["nsenter", f"--net={NETNS_DIR / netns}"]


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    full = [*nsenter(netns), *argv] if netns else list(argv)
    try:
        done = subprocess.run(
            full, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise TestbedError(f"timed out after {timeout}s", argv=full) from err
    if check and done.returncode != 0:
        raise TestbedError(f"exit status {done.returncode}", argv=full, output=done.stderr)
    return done


def ip(*args: str, netns: str | None = None, check: bool = True) -> Any:
    """Run ``ip``; with ``-j`` among the arguments, return the parsed JSON."""
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    out = run(argv, check=check).stdout
    return json.loads(out or "[]") if "-j" in args else out


# --- namespaces and links --------------------------------------------------------------------


def namespaces(prefix: str = "") -> list[str]:
    return sorted(path.name for path in NETNS_DIR.glob(f"{prefix}*")) if NETNS_DIR.exists() else []


def interfaces(netns: str | None = None, prefix: str = "") -> list[str]:
    names = (str(link["ifname"]) for link in ip("-j", "link", "show", netns=netns))
    return sorted(name for name in names if name.startswith(prefix))


def add_namespace(name: str) -> None:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)
    # IPv6 addresses would otherwise vanish when a link is taken down, and not come back.
    run(["sysctl", "-qw", "net.ipv6.conf.all.keep_addr_on_down=1"], netns=name)


def delete_namespace(name: str) -> None:
    ip("netns", "delete", name, check=False)


def delete_interface(name: str) -> None:
    ip("link", "delete", name, check=False)


def add_bridge(name: str, *, v4: str, v6: str) -> None:
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", v4, "dev", name)
    ip("-6", "addr", "add", v6, "dev", name, "nodad")
    ip("link", "set", name, "up")


def add_wan(*, bridge: str, root_end: str, netns: str, v4: str, v6: str) -> None:
    """A veth from the namespace (``wan0``) to a port of the cloud side's bridge."""
    ip("link", "add", root_end, "type", "veth", "peer", "name", "wan0", "netns", netns)
    ip("link", "set", root_end, "master", bridge, "up")
    configure("wan0", netns=netns, addresses=[v4, v6])


def add_host(*, netns: str, root_end: str, address: str, gateway: str) -> None:
    """A namespace at the far end of a veth from the root namespace: ``address`` there,
    ``gateway`` (same /24) the root namespace's end, which routes to it."""
    ip("link", "add", root_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
    ip("addr", "add", f"{gateway}/24", "dev", root_end)
    ip("link", "set", root_end, "up")
    configure("eth0", netns=netns, addresses=[f"{address}/24"])
    ip("route", "add", "default", "via", gateway, netns=netns)


def accept_forwarding(chain: str, interfaces: Sequence[str]) -> None:
    """Let the root namespace forward to and from ``interfaces`` whatever its FORWARD
    policy (Docker turns it to DROP when it has to switch forwarding on itself), through
    ``chain``, the first rule of FORWARD."""
    rules = [f":{chain} - [0:0]"]
    for interface in interfaces:
        rules += [f"-A {chain} -i {interface} -j ACCEPT", f"-A {chain} -o {interface} -j ACCEPT"]
    run(["iptables-restore", "-w", "--noflush"], stdin="\n".join(["*filter", *rules, "COMMIT", ""]))
    run(["iptables", "-w", "-I", "FORWARD", "1", "-j", chain])


def remove_forwarding(chain: str) -> None:
    while run(["iptables", "-w", "-D", "FORWARD", "-j", chain], check=False).returncode == 0:
        pass
    run(["iptables", "-w", "-F", chain], check=False)
    run(["iptables", "-w", "-X", chain], check=False)


def add_lowpan(a: tuple[str, str, str], b: tuple[str, str, str], *, mtu: int) -> None:
    """A veth between two namespaces; each end is ``(netns, interface, IPv6 address/len)``."""
    (a_ns, a_if, a_addr), (b_ns, b_if, b_addr) = a, b
    ip(
        "link", "add", "name", a_if, "netns", a_ns, "mtu", str(mtu),
        "type", "veth", "peer", "name", b_if, "netns", b_ns, "mtu", str(mtu),
    )  # fmt: skip
    for netns, ifname in ((a_ns, a_if), (b_ns, b_if)):
        _like_6lowpan_nd(ifname, netns=netns)
    configure(a_if, netns=a_ns, addresses=[a_addr])
    configure(b_if, netns=b_ns, addresses=[b_addr])


def _like_6lowpan_nd(ifname: str, *, netns: str) -> None:
    """Neighbour discovery as 6LoWPAN nodes do it (RFC 6775): a neighbour's address is
    registered for minutes rather than re-probed whenever 30 s pass, and the static mesh
    has no router advertisements to solicit. Plain IPv6 ND would put about 500 B/min of
    probes on an otherwise quiet link, which the radio never carries."""
    for key, value in (
        (f"net.ipv6.conf.{ifname}.router_solicitations", "0"),
        (f"net.ipv6.conf.{ifname}.accept_ra", "0"),
        (f"net.ipv6.neigh.{ifname}.base_reachable_time_ms", "600000"),
    ):
        run(["sysctl", "-qw", f"{key}={value}"], netns=netns)


def configure(ifname: str, *, netns: str, addresses: Sequence[str]) -> None:
    for address in addresses:
        # No duplicate address detection: the address is usable at once, and ours are unique.
        extra = ["nodad"] if ":" in address else []
        ip("addr", "add", address, "dev", ifname, *extra, netns=netns)
    ip("link", "set", ifname, "up", netns=netns)


def set_up(ifname: str, *, netns: str, up: bool) -> None:
    ip("link", "set", ifname, "up" if up else "down", netns=netns)


def link_state(ifname: str, *, netns: str) -> dict[str, Any]:
    [link] = ip("-j", "addr", "show", "dev", ifname, netns=netns)
    return {
        "up": "UP" in link["flags"],
        "mtu": link["mtu"],
        "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])],
    }


# --- shaping ------------------------------------------------------------------------------


def shape(ifname: str, *, netns: str | None, rate_kbit: int | None) -> None:
    """Limit what leaves the interface to ``rate_kbit`` (None: no limit)."""
    tc = ["tc", "qdisc"]
    if rate_kbit is None:
        run([*tc, "del", "dev", ifname, "root"], netns=netns, check=False)
        return
    tbf = ["tbf", "rate", f"{rate_kbit}kbit", "burst", TBF_BURST, "latency", TBF_LATENCY]
    run([*tc, "replace", "dev", ifname, "root", *tbf], netns=netns)


def shaped_rate_kbit(ifname: str, *, netns: str | None) -> int | None:
    qdiscs = json.loads(run(["tc", "-j", "qdisc", "show", "dev", ifname], netns=netns).stdout)
    for qdisc in qdiscs:
        if qdisc.get("kind") == "tbf" and qdisc.get("root"):
            return int(qdisc["options"]["rate"]) * 8 // 1000
    return None


# --- firewall controls -----------------------------------------------------------------------


def cut_chain(ifname: str) -> str:
    return f"ectb-cut-{ifname}"


def loss_chain(ifname: str) -> str:
    return f"ectb-loss-{ifname}"


def _restore(netns: str, lines: Sequence[str]) -> None:
    # --noflush: only the chains declared here are (re)written, atomically, per family.
    text = "\n".join(["*filter", *lines, "COMMIT", ""])
    for family in FAMILIES:
        run([f"{family}-restore", "--noflush"], netns=netns, stdin=text)


def install_controls(ifname: str, *, netns: str, inbound_loss: bool) -> None:
    """Create the interface's cut and loss chains (both empty) and hook them in.

    A cut drops both directions at this end. Loss applies to what leaves the interface, and
    also to what arrives when ``inbound_loss`` (the far end of a WAN is the cloud side, whose
    firewall the testbed leaves alone).
    """
    cut, loss = cut_chain(ifname), loss_chain(ifname)
    lines = [f":{cut} - [0:0]", f":{loss} - [0:0]"]
    lines += [f"-A OUTPUT -o {ifname} -j {cut}", f"-A INPUT -i {ifname} -j {cut}"]
    lines.append(f"-A OUTPUT -o {ifname} -j {loss}")
    if inbound_loss:
        lines.append(f"-A INPUT -i {ifname} -j {loss}")
    _restore(netns, lines)


def set_cut(ifname: str, *, netns: str, cut: bool) -> None:
    chain = cut_chain(ifname)
    _restore(netns, [f":{chain} - [0:0]", *([f"-A {chain} -j DROP"] if cut else [])])


def set_loss(ifname: str, *, netns: str, probability: float) -> None:
    if not 0 <= probability <= 1:
        raise ValueError(f"loss must be between 0 and 1, not {probability}")
    chain = loss_chain(ifname)
    rules = [f":{chain} - [0:0]"]
    if probability > 0:
        statistic = f"-m statistic --mode random --probability {probability:.6f}"
        rules.append(f"-A {chain} {statistic} -j DROP")
    _restore(netns, rules)


def controls(ifname: str, *, netns: str) -> dict[str, Any]:
    """What the interface's chains hold now (read from the IPv6 table; both are kept equal)."""

    def rules(chain: str) -> list[str]:
        listed = run(["ip6tables", "-S", chain], netns=netns, check=False).stdout.splitlines()
        return [rule for rule in listed if rule.startswith("-A ")]

    loss = 0.0
    for rule in rules(loss_chain(ifname)):
        words = rule.split()
        if "--probability" in words:
            loss = round(float(words[words.index("--probability") + 1]), 6)
    return {"cut": bool(rules(cut_chain(ifname))), "loss": loss}


def root_rules(text: str) -> list[str]:
    """Rules of the root namespace's firewall (both families) that mention ``text``."""
    found = []
    for family in FAMILIES:
        saved = run([f"{family}-save"], check=False).stdout.splitlines()
        found += [line for line in saved if text in line]
    return found


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].replace("\\040", " "))
        if point == directory or directory in point.parents:
            points.append(point)
    return sorted(points, key=lambda point: len(point.parts), reverse=True)
