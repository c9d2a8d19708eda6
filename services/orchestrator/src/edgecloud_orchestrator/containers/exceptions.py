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


class NoMatchingDevice(Conflict):
    default_code = "no_matching_device"

    def __init__(self) -> None:
        super().__init__("no reachable device granted to the tenant matches the placement")


class InterfaceNotDeclared(Unprocessable):
    default_code = "interface_not_declared"

    def __init__(self, name: str) -> None:
        super().__init__(f"interface {name} is not declared on the device")


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
