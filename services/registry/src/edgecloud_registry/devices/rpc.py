"""WAMP adapter: the heartbeat procedures devices call (full, and compact on the mesh)."""

import logging
from typing import Any, TypeVar

import cbor2
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import errors, uris
from edgecloud_contracts.heartbeat import (
    MAX_HEARTBEAT_BYTES,
    CompactBeat,
    ContainerState,
    DeviceInfo,
    Heartbeat,
)

from .exceptions import IngestOverloaded
from .ingest import HeartbeatIngest
from .models import Device
from .peers import PeerDirectory

logger = logging.getLogger(__name__)


Model = TypeVar("Model", bound=BaseModel)


def _parse(model: type[Model], payload: Any, details: CallDetails) -> Model:
    """The payload as ``model``, from a device, within the size limit; else a refusal."""
    if details.caller_authrole != uris.ROLE_DEVICE or not details.caller_authid:
        raise _refuse(errors.NOT_AUTHORIZED, "only devices send heartbeats")
    if not isinstance(payload, dict):
        raise _refuse(errors.INVALID_ARGUMENT, "the heartbeat must be a map")
    size = len(cbor2.dumps(payload))
    if size > MAX_HEARTBEAT_BYTES:
        raise _refuse(
            errors.PAYLOAD_TOO_LARGE,
            f"heartbeat is {size} bytes, the limit is {MAX_HEARTBEAT_BYTES}",
            limit=MAX_HEARTBEAT_BYTES,
        )
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        problems = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in err.errors()[:20]
        ]
        raise _refuse(errors.INVALID_ARGUMENT, "malformed heartbeat", errors=problems) from err


def _refuse(uri: str, message: str, **fields: Any) -> ApplicationError:
    # Counted by its URI's last part in edgecloud_wamp_invocation_duration_seconds.
    return ApplicationError(uri, message, **fields)


class HeartbeatRpc:
    def __init__(self, ingest: HeartbeatIngest, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._ingest = ingest
        self._sessions = sessions
        self._peers = PeerDirectory(sessions)

    async def heartbeat(self, payload: Any = None, *, details: CallDetails) -> dict[str, Any]:
        """``edge.registry.heartbeat(heartbeat)``: record a device's heartbeat."""
        beat = _parse(Heartbeat, payload, details)
        if beat.device.key != details.caller_authid:
            raise _refuse(
                errors.NOT_AUTHORIZED,
                f"a device may only report for itself ({details.caller_authid})",
            )
        return await self._submit(beat, details)

    async def compact_beat(self, payload: Any = None, *, details: CallDetails) -> dict[str, Any]:
        """``edge.registry.beat(compact)``: a heartbeat over the slow mesh, completed with
        the device's description from its last full heartbeat."""
        compact = _parse(CompactBeat, payload, details)
        key = str(details.caller_authid)
        async with self._sessions() as session:
            device = await session.get(Device, key)
        if device is None:
            raise _refuse(errors.FULL_HEARTBEAT_NEEDED, "send a full heartbeat first")
        info = DeviceInfo.model_validate(
            {name: getattr(device, name) for name in DeviceInfo.model_fields}
        )
        containers = [ContainerState.model_validate(c) for c in device.containers]
        return await self._submit(
            compact.expand(info, containers, device.neighbours), details, full=False
        )

    async def _submit(
        self, beat: Heartbeat, details: CallDetails, *, full: bool = True
    ) -> dict[str, Any]:
        try:
            ack = await self._ingest.submit(beat, session_id=details.caller)
            if full and beat.device.peer_url:
                near = await self._peers.near(beat.device)
                ack = ack.model_copy(
                    update={"peers": near, "peer_urls": self._peers.addresses(near) or None}
                )
        except IngestOverloaded as err:
            raise _refuse(errors.UNAVAILABLE, str(err)) from err
        except Exception as err:  # database trouble; the device retries at its next beat
            logger.warning("heartbeat of %s not stored: %s", beat.device.key, err)
            raise _refuse(errors.UNAVAILABLE, "heartbeat could not be stored, retry later") from err
        return ack.model_dump(mode="json", exclude_none=True)  # no "peers": null on the mesh
