"""Which device a container goes to: the one named (if the tenant may use it), or the
least loaded reachable device that matches a placement."""

from typing import Any

from edgecloud_contracts.containers import CreateContainer
from edgecloud_contracts.platforms import fits
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient

from . import service
from .exceptions import ArchMismatch, NoMatchingDevice


async def choose_device(
    *,
    registry: ServiceClient,
    caller: Identity,
    request: CreateContainer,
    image_platforms: set[str] | None,
) -> dict[str, Any]:
    """The device, as the registry shows it to the caller (a 404 if not granted), whose
    architecture fits the image when the image's platforms are known."""
    if request.device is not None:
        answer = await registry.request("GET", f"/v1/devices/{request.device}", identity=caller)
        device: dict[str, Any] = answer.json()
        if image_platforms is not None and not fits(device["arch"], image_platforms):
            raise ArchMismatch(request.image, device["key"], device["arch"], image_platforms)
        return device
    assert request.placement is not None
    candidates: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = (
            await registry.request(
                "GET", "/v1/devices", identity=caller, params={"limit": 1000, "cursor": cursor}
            )
        ).json()
        candidates += [
            d
            for d in page["items"]
            if service.device_matches(
                d, location=request.placement.location, arch=request.placement.arch
            )
            and fits(d["arch"], image_platforms)
        ]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if not candidates:
        raise NoMatchingDevice()
    # Prefer the WAN link, then the lightest load.
    return min(candidates, key=lambda d: (d.get("status") != "online", *service.load(d)))
