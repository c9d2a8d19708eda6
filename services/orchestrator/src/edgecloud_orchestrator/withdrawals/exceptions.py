from edgecloud_servicekit.problems import Conflict, Forbidden


class DeviceNotGranted(Forbidden):
    """The container is the caller's, but its device is no longer granted to the caller's
    tenant: it may be read and removed, not acted on."""

    default_code = "device_not_granted"

    def __init__(self, device_key: str, container_id: str | None = None) -> None:
        what = f"container {container_id}" if container_id else "this"
        super().__init__(
            f"the device {device_key} is no longer granted to your tenant: {what} can be"
            " read and removed, not started, stopped, entered or deployed to",
            device=device_key,
        )


class StillGranted(Conflict):
    default_code = "device_still_granted"

    def __init__(self, device_key: str, tenant_id: str) -> None:
        super().__init__(
            f"the device {device_key} is still granted to {tenant_id}: withdraw the grant first"
        )
