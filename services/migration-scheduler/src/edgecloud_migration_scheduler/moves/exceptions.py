from edgecloud_contracts.devices import HostPort, PortRefusal
from edgecloud_servicekit.problems import Conflict, NotFound, Unprocessable


class MigrationNotFound(NotFound):
    """Also another tenant's migration: it is not for the caller to know it exists."""

    default_code = "migration_not_found"

    def __init__(self, migration_id: str) -> None:
        super().__init__(f"migration {migration_id} not found")


class MigrationInProgress(Conflict):
    default_code = "migration_in_progress"

    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id} is being moved already")


class NoSuitablePeer(Unprocessable):
    """Recorded as a failed migration, whose id the problem carries."""

    default_code = "no_suitable_peer"

    def __init__(self, migration_id: str, why: str) -> None:
        super().__init__(why, migration=migration_id)


class DeviceNotEligible(Unprocessable):
    default_code = "device_not_eligible"

    def __init__(self, device: str, why: str) -> None:
        super().__init__(f"{device} cannot take this container: {why}", device=device)


class HoldsHardware(Conflict):
    default_code = "holds_hardware"

    def __init__(self, container_id: str) -> None:
        super().__init__(
            f"container {container_id} holds hardware interfaces of its node: it cannot move"
        )


class PortsRefused(Unprocessable):
    """The device asked for cannot publish one of the container's host ports: it has no
    range for tenants (``ports_not_allowed``), the port is outside it
    (``port_out_of_range``), or it is held there already (``port_taken``, a conflict)."""

    def __init__(self, device: str, why: PortRefusal, port: HostPort) -> None:
        host, protocol = port
        held = "is published there already" if why == "port_taken" else "is not published there"
        super().__init__(
            f"{device} cannot take this container: its host port {host}/{protocol} {held} ({why})",
            code=why,
            device=device,
            port=host,
            protocol=protocol,
        )
        if why == "port_taken":
            self.status, self.title = 409, "Conflict"
