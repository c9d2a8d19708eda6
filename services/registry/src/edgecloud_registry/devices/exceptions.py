from edgecloud_servicekit.problems import NotFound, Unavailable


class DeviceNotFound(NotFound):
    default_code = "device_not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"device {key} not found")


class IngestOverloaded(Unavailable):
    default_code = "heartbeat_backlog_full"
