"""The knobs of a run's links: cut, restore, take down, degrade, reset; and their state now.

A cut drops every packet on the interface inside the node (both ways, no RST: a half-open
link); loss and rate apply to both directions of a link. There is no netem in this kernel,
so there is no added delay (``tbf``'s latency only bounds its queue).
"""

from typing import Any

from infra.testbed import network
from infra.testbed.topology import NodeRef, Topology


class LinkControls(Topology):
    """The link controls of a built run (:class:`infra.testbed.testbed.Testbed`)."""

    def interfaces(self, node: NodeRef) -> list[str]:
        """The node's controlled interfaces: ``wan0`` and its lowpan links."""
        return ["wan0", *(end.interface for end in self.link_ends(node))]

    def interface(self, node: NodeRef, link: str) -> str:
        """``wan``, an interface name, or a neighbour's name: the node's interface for it."""
        if link in ("wan", "wan0"):
            return "wan0"
        ends = self.link_ends(node)
        for end in ends:
            if link in (end.interface, end.far.name):
                return end.interface
        known = ", ".join(["wan", *(end.interface for end in ends)])
        raise LookupError(f"{self.node(node).name} has no link {link!r} (it has {known})")

    def cut(self, node: NodeRef, link: str = "wan") -> None:
        """Drop every packet on the link at this node, both ways: a half-open link."""
        network.set_cut(self.interface(node, link), netns=self.node(node).netns, cut=True)

    def restore(self, node: NodeRef, link: str = "wan") -> None:
        network.set_cut(self.interface(node, link), netns=self.node(node).netns, cut=False)

    def link_down(self, node: NodeRef, link: str = "wan") -> None:
        """Take the interface down: the node sees the link go, unlike a cut."""
        network.set_up(self.interface(node, link), netns=self.node(node).netns, up=False)

    def link_up(self, node: NodeRef, link: str = "wan") -> None:
        network.set_up(self.interface(node, link), netns=self.node(node).netns, up=True)

    def degrade(
        self,
        node: NodeRef,
        link: str = "wan",
        *,
        loss: float | None = None,
        rate_kbit: int | None = None,
    ) -> None:
        """Change a link's random loss (0..1) and rate (kbit/s; 0: unlimited) in both
        directions; None leaves a setting as it is. (No delay: this kernel has no netem.)"""
        for netns, interface in self._link_ends(node, link):
            if loss is not None and netns is not None:
                network.set_loss(interface, netns=netns, probability=loss)
            if rate_kbit is not None:
                network.shape(interface, netns=netns, rate_kbit=rate_kbit or None)

    def _link_ends(self, node: NodeRef, link: str) -> list[tuple[str | None, str]]:
        """Where the link's two directions are shaped. The WAN's far end is the bridge's port
        in the root namespace (None), whose firewall is left alone: the WAN's inbound loss
        is applied inside the node instead (see network.install_controls)."""
        here = self.node(node)
        interface = self.interface(here, link)
        if interface == "wan0":
            return [(here.netns, interface), (None, here.wan_end)]
        [end] = [end for end in self.link_ends(here) if end.interface == interface]
        far = self.interface(end.far, here.name)
        return [(here.netns, interface), (end.far.netns, far)]

    def reset_links(self) -> None:
        """Every link as built: up, not cut; the WAN clean, the lowpan links 6LoWPAN-like."""
        for node in self.nodes:
            for interface in self.interfaces(node):
                network.set_up(interface, netns=node.netns, up=True)
                network.set_cut(interface, netns=node.netns, cut=False)
            self.degrade(node, "wan", loss=0, rate_kbit=0)
        for link in self.links:
            near = link.a.near
            self.degrade(
                near, link.a.interface, loss=self.lowpan_loss, rate_kbit=self.lowpan_rate_kbit
            )

    def link_status(self, node: NodeRef) -> dict[str, dict[str, Any]]:
        """Each interface of the node: up, MTU, addresses, cut, loss and rate now."""
        netns = self.node(node).netns
        return {
            interface: network.link_state(interface, netns=netns)
            | network.controls(interface, netns=netns)
            | {"rate_kbit": network.shaped_rate_kbit(interface, netns=netns)}
            for interface in self.interfaces(node)
        }
