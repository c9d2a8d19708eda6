"""Which device a container goes to: the one named (if the tenant may use it), or the
least loaded reachable device that matches a placement (publishes the container's ports
from its range and has them free, and grants the tenant the sensor topics the container
subscribes to)."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import CreateContainer
from edgecloud_contracts.devices import host_ports, port_refusal
from edgecloud_contracts.platforms import fits
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient

from . import interfaces, ports, service
from .exceptions import ArchMismatch, NoMatchingDevice, TopicNotGranted
from .fitting import policy_of


async def choose_device(
    *,
    registry: ServiceClient,
    sessions: async_sessionmaker[AsyncSession],
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
    if request.ports:
        candidates = await _publishing(sessions, candidates, request)
    # Prefer the WAN link, then the lightest load.
    ranked = sorted(candidates, key=lambda d: (d.get("status") != "online", *service.load(d)))
    if not request.subscriptions:
        return ranked[0]
    return await _first_granting(
        registry=registry, caller=caller, ranked=ranked, subscriptions=request.subscriptions
    )


async def _publishing(
    sessions: async_sessionmaker[AsyncSession],
    candidates: list[dict[str, Any]],
    request: CreateContainer,
) -> list[dict[str, Any]]:
    """The candidates that publish the container's ports and have them free now (the
    reservation at create has the last word: a port may go meanwhile)."""
    async with sessions() as session:
        taken = await ports.taken_on(session, devices=[d["key"] for d in candidates])
    wanted = host_ports(request.ports)
    fitting = [d for d in candidates if port_refusal(policy_of(d), wanted, taken[d["key"]]) is None]
    if not fitting:
        raise NoMatchingDevice(ports=True)
    return fitting


async def _first_granting(
    *,
    registry: ServiceClient,
    caller: Identity,
    ranked: list[dict[str, Any]],
    subscriptions: list[str],
) -> dict[str, Any]:
    """The first device whose sensor streams granted to the caller cover every topic the
    container subscribes to: which device is lightest must not decide whether it may."""
    refused: str | None = None
    for device in ranked:
        declared = await interfaces.declared_for(
            registry=registry, caller=caller, device_key=device["key"]
        )
        topic = interfaces.uncovered(declared, subscriptions)
        if topic is None:
            return device
        refused = refused or topic
    assert refused is not None
    raise TopicNotGranted(refused, where="any device matching the placement")
