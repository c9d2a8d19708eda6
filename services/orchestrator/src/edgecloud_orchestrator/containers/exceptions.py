from edgecloud_servicekit.problems import Conflict, Forbidden, NotFound, Unprocessable


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
    """The tenant's containers on the device would reserve more of its memory than the
    tenant's share of one node."""

    default_code = "node_share_exceeded"

    def __init__(self, device: str, reserved: int, asked: int, allowed: int) -> None:
        super().__init__(
            f"the tenant's containers on {device} reserve {reserved} bytes of memory; "
            f"{asked} more would pass the tenant's share of the node ({allowed} bytes)",
            reserved=reserved,
            asked=asked,
            allowed=allowed,
        )


class NoMatchingDevice(Conflict):
    default_code = "no_matching_device"

    def __init__(self) -> None:
        super().__init__("no reachable device granted to the tenant matches the placement")


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
