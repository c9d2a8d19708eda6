"""The router's dynamic authenticator for device logins (WAMP-cryptosign)."""

import logging
from typing import Any

from autobahn.wamp.exception import ApplicationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts import errors, uris
from edgecloud_servicekit.db import transaction

from . import service
from .exceptions import CredentialError

logger = logging.getLogger(__name__)


class DeviceAuthenticator:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def authenticate(
        self, realm: str, authid: str | None, details: dict[str, Any]
    ) -> dict[str, Any]:
        """Called by the router with the client's HELLO; answers with its principal."""
        extra = details.get("authextra") if isinstance(details, dict) else None
        extra = extra or {}
        token = extra.get("enrolment_token") if isinstance(extra, dict) else None
        if (
            not isinstance(details, dict)
            or not isinstance(extra, dict)
            or not isinstance(authid, str | None)
            or not isinstance(token, str | None)
        ):
            # Only services may call this (the router does, as meant); anything else they
            # send is refused in words, not with a Python error.
            raise ApplicationError(
                errors.INVALID_ARGUMENT,
                "expected (realm, authid, details) with details and details.authextra objects"
                " and its enrolment_token a string",
            )
        try:
            async with transaction(self._sessions) as session:
                result = await service.authenticate(
                    session=session,
                    device_key=authid or "",
                    public_key=str(extra.get("pubkey") or ""),
                    enrolment_token=token or None,
                )
        except CredentialError as err:
            logger.warning("device login refused: %s", err.message, extra={"device": authid})
            raise ApplicationError(err.uri, err.message) from err
        if result.readmitted:
            logger.warning(
                "revoked device %s re-admitted with a new key and no grants",
                result.device_key,
                extra={"device": result.device_key},
            )
        elif result.enrolled_now:
            logger.info(
                "device %s enrolled", result.device_key, extra={"device": result.device_key}
            )
        return {
            "pubkey": result.public_key,
            "authid": result.device_key,
            "role": uris.ROLE_DEVICE,
            "realm": realm,
        }
