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
