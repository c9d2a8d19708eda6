from edgecloud_contracts.devices import HostPort, port_refusal
from edgecloud_contracts.heartbeat import NodePolicy
from edgecloud_servicekit.problems import Conflict, Forbidden, NotFound, Problem, Unprocessable


class ContainerNotFound(NotFound):
    default_code = "container_not_found"

    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id} not found")


class NameTaken(Conflict):
    default_code = "name_taken"

    def __init__(self, name: str, device: str) -> None:
        super().__init__(f"a container named {name} already exists on {device}")


class QuotaExceeded(Forbidden):
    default_code = "quota_exceeded"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the tenant's quota of {limit} containers is used up", limit=limit)


class ExceedsDevice(Unprocessable):
    """A limit larger than the whole device: it would be no limit at all."""

    default_code = "exceeds_device"

    def __init__(self, limit: str, asked: float, device: str, has: float) -> None:
        super().__init__(
            f"limits.{limit} of {asked:g} is more than {device} has ({has:g})",
            limit=limit,
            asked=asked,
            available=has,
        )


class NodeShareExceeded(Forbidden):
    """The tenant's containers on the device would reserve more of one of its resources
    (memory, CPUs, PIDs) than the tenant's share of one node."""

    default_code = "node_share_exceeded"

    def __init__(
        self, device: str, resource: str, reserved: float, asked: float, allowed: float
    ) -> None:
        what = RESOURCE_NAMES.get(resource, resource)
        super().__init__(
            f"the tenant's containers on {device} reserve {_figure(reserved)} {what}; "
            f"{_figure(asked)} more would pass the tenant's share of the node "
            f"({_figure(allowed)} {what})",
            resource=resource,
            reserved=reserved,
            asked=asked,
            allowed=allowed,
        )


RESOURCE_NAMES = {"memory": "bytes of memory", "cpus": "CPUs", "pids": "PIDs"}


def _figure(amount: float) -> str:
    return str(int(amount)) if float(amount).is_integer() else f"{amount:g}"


class PortsNotAllowed(Unprocessable):
    default_code = "ports_not_allowed"

    def __init__(self, device: str, port: HostPort) -> None:
        host, protocol = port
        super().__init__(
            f"{device} publishes no ports for tenants (its operator set no range): "
            f"{host}/{protocol} cannot be published there",
            port=host,
            protocol=protocol,
        )


class PortOutOfRange(Unprocessable):
    default_code = "port_out_of_range"

    def __init__(self, device: str, port: HostPort, allowed: tuple[int, int]) -> None:
        (host, protocol), (low, high) = port, allowed
        super().__init__(
            f"host port {host}/{protocol} is outside the range {device} publishes from "
            f"({low}-{high})",
            port=host,
            protocol=protocol,
            range=[low, high],
        )


class PortTaken(Conflict):
    default_code = "port_taken"

    def __init__(self, device: str, port: HostPort) -> None:
        # Whose it is stays unsaid: it may be another tenant's.
        host, protocol = port
        super().__init__(
            f"host port {host}/{protocol} is published on {device} already",
            port=host,
            protocol=protocol,
        )


def ports_refused(
    device: str, policy: NodePolicy | None, ports: list[HostPort], taken: set[HostPort]
) -> Problem | None:
    """The problem saying why ``ports`` cannot be published on ``device``, if they cannot."""
    refusal = port_refusal(policy, ports, taken)
    if refusal is None:
        return None
    why, port = refusal
    if why == "port_taken":
        return PortTaken(device, port)
    if why == "port_out_of_range" and policy is not None and policy.ports is not None:
        return PortOutOfRange(device, port, policy.ports)
    return PortsNotAllowed(device, port)


class NoMatchingDevice(Conflict):
    default_code = "no_matching_device"

    def __init__(self, *, ports: bool = False) -> None:
        where = " and has its host ports free" if ports else ""
        super().__init__(f"no reachable device granted to the tenant matches the placement{where}")


class InterfaceNotDeclared(Unprocessable):
    default_code = "interface_not_declared"

    def __init__(self, name: str) -> None:
        # The same answer whether it is missing or someone else's: nothing leaks.
        super().__init__(
            f"interface {name!r} is not declared on the device for you", interface=name
        )


class ContainerRemoved(Conflict):
    default_code = "container_removed"

    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id} has been removed")


class ContainerStored(Conflict):
    """Level 1: a keeper holds its package until a node can run it; only removal is
    possible meanwhile."""

    default_code = "container_stored"

    def __init__(self, container_id: str, keeper: str) -> None:
        super().__init__(
            f"container {container_id} is stored on {keeper} until a node can run it",
            device=keeper,
        )


class NodeRefused(Unprocessable):
    """The node tried and failed (e.g. the image could not be pulled)."""

    default_code = "node_error"


class ArchMismatch(Unprocessable):
    default_code = "arch_mismatch"

    def __init__(self, image: str, device: str, arch: str, platforms: set[str]) -> None:
        super().__init__(
            f"{image} is built for {', '.join(sorted(platforms))}; {device} is {arch}",
            platforms=sorted(platforms),
        )


class MovedElsewhere(Conflict):
    default_code = "container_moved"

    def __init__(self, container_id: str, device: str) -> None:
        super().__init__(f"container {container_id} is on {device} now", device=device)


class InterfaceNeedsDevice(Unprocessable):
    default_code = "interfaces_need_a_device"

    def __init__(self) -> None:
        super().__init__("interfaces belong to one node: name the device instead of a placement")


class InterfaceBusy(Conflict):
    default_code = "interface_busy"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"interface {name} is held by another container until it stops", interface=name
        )


class TopicNotGranted(Unprocessable):
    default_code = "topic_not_granted"

    def __init__(self, topic: str, *, where: str = "the device") -> None:
        super().__init__(f"no sensor stream of {where} granted to you covers {topic}", topic=topic)


class HoldsHardware(Conflict):
    default_code = "holds_hardware"

    def __init__(self, container_id: str) -> None:
        super().__init__(
            f"container {container_id} holds hardware interfaces of its node: it cannot move"
        )
