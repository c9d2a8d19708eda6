"""Internal REST: enrolment tokens and revocation (operators only)."""

import logging
from datetime import timedelta

from fastapi import APIRouter, status

from edgecloud_contracts import uris
from edgecloud_contracts.devices import Enrolment, EnrolmentRequest
from edgecloud_servicekit.problems import NotFound
from edgecloud_servicekit.wamp import WampError

from ..deps import OperatorDep, SessionDep, WampDep
from . import service

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["credentials"])


@router.post("/enrolments", status_code=status.HTTP_201_CREATED, response_model=Enrolment)
async def create_enrolment(
    body: EnrolmentRequest, session: SessionDep, operator: OperatorDep
) -> Enrolment:
    issued = await service.create_enrolment(
        session=session,
        created_by=operator.user_id,
        ttl=timedelta(seconds=body.ttl_seconds),
        note=body.note,
        device_key=body.device,
    )
    return Enrolment(id=issued.id, token=issued.token, expires_at=issued.expires_at)


@router.post("/devices/{key}/revoke", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_device(
    key: str, session: SessionDep, operator: OperatorDep, wamp: WampDep
) -> None:
    """Revoke the device's credential and end its live session now."""
    if not await service.revoke(session=session, device_key=key):
        raise NotFound(f"device {key} has no credential", code="device_not_found")
    await session.commit()
    try:
        await wamp.call(
            uris.META_SESSION_KILL_BY_AUTHID,
            key,
            reason="wamp.close.revoked",
            message="device credential revoked",
            timeout=5,
        )
    except WampError as err:
        # The credential is revoked either way; the session cannot log in again.
        logger.warning("could not end the session of revoked device %s: %s", key, err)
