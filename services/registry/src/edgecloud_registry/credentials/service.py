"""Enrolment tokens and device credentials (Ed25519 public keys).

A new agent makes its own key pair, then logs in with WAMP-cryptosign giving its
public key and the operator's one-time enrolment token. The router asks
:func:`authenticate` (through the registry's authenticator procedure), which consumes
the token and records the public key, atomically. Later logins need only the key.

Revocation is for good. A revoked public key is remembered (``revoked_device_keys``) and
never logs in or enrols again, under any device key. A revoked device key does not come
back with an ordinary enrolment token either (``edge.error.auth.revoked``, the token left
unused): only a token an operator made for that very device re-admits it, with a new key,
and it then starts with no tenant grants and its interfaces for no tenant, whatever its
name and MAC were granted before.
"""

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.uris import SERVICE_AUTHIDS
from edgecloud_servicekit.db import insert_new, utcnow
from edgecloud_servicekit.problems import Conflict
from edgecloud_servicekit.secret_tokens import hash_token, new_token

from ..devices.models import DeviceGrant
from ..interfaces.models import DeviceInterface
from .exceptions import CredentialRevoked, EnrolmentInvalid, KeyMismatch, UnknownDevice
from .models import DeviceCredential, EnrolmentToken, RevokedDeviceKey

_KEY = re.compile(KEY_PATTERN)
_PUBLIC_KEY = re.compile(r"^[0-9a-f]{64}$")
TOKEN_PREFIX = "ece_"


@dataclass(frozen=True, slots=True)
class IssuedEnrolment:
    id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Authenticated:
    device_key: str
    public_key: str
    enrolled_now: bool
    readmitted: bool = False


async def create_enrolment(
    *,
    session: AsyncSession,
    created_by: str,
    ttl: timedelta,
    note: str = "",
    device_key: str | None = None,
) -> IssuedEnrolment:
    """Issue a one-time enrolment token; only its hash is stored. With ``device_key`` the
    token is for that device only, and re-admits it if it was revoked (409
    ``device_enrolled`` while it holds a live credential)."""
    if device_key is not None:
        live = await session.scalar(
            select(DeviceCredential.device_key).where(
                DeviceCredential.device_key == device_key, DeviceCredential.revoked_at.is_(None)
            )
        )
        if live is not None:
            raise Conflict(
                f"device {device_key} is enrolled; revoke it before re-admitting it",
                code="device_enrolled",
            )
    token = new_token(TOKEN_PREFIX)
    now = utcnow()
    row = EnrolmentToken(
        id=str(uuid.uuid4()),
        token_hash=hash_token(token),
        note=note,
        created_by=created_by,
        created_at=now,
        expires_at=now + ttl,
        device_key=device_key,
    )
    session.add(row)
    await session.flush()
    return IssuedEnrolment(id=row.id, token=token, expires_at=row.expires_at)


async def authenticate(
    *, session: AsyncSession, device_key: str, public_key: str, enrolment_token: str | None
) -> Authenticated:
    """Decide whether ``device_key`` may log in with ``public_key``."""
    if not _KEY.match(device_key or ""):
        raise UnknownDevice("authid is not a device key")
    if device_key in SERVICE_AUTHIDS:
        raise UnknownDevice(f"{device_key} names a service, not a device")
    if not _PUBLIC_KEY.match(public_key or ""):
        raise KeyMismatch("authextra.pubkey must be 64 lowercase hex characters")

    if await session.get(RevokedDeviceKey, public_key) is not None:
        raise CredentialRevoked("this public key was revoked and never logs in again")
    credential = await session.get(DeviceCredential, device_key)
    now = utcnow()
    if credential is not None and credential.revoked_at is None:
        if not secrets.compare_digest(credential.public_key, public_key):
            raise KeyMismatch(f"device {device_key} is enrolled with another key")
        credential.last_auth_at = now
        return Authenticated(device_key, public_key, enrolled_now=False)
    if not enrolment_token:
        if credential is not None:
            raise CredentialRevoked(f"the credential of device {device_key} was revoked")
        raise UnknownDevice(f"device {device_key} is not enrolled")

    enrolment = await session.scalar(
        select(EnrolmentToken).where(
            EnrolmentToken.token_hash == hash_token(enrolment_token),
            EnrolmentToken.used_at.is_(None),
            EnrolmentToken.expires_at > now,
        )
    )
    if enrolment is None:
        raise EnrolmentInvalid("enrolment token unknown, expired or already used")
    if enrolment.device_key is not None and enrolment.device_key != device_key:
        raise EnrolmentInvalid("this enrolment token is for another device")
    readmitting = credential is not None
    if readmitting and enrolment.device_key != device_key:
        # Checked before the token is used: it stays good for the new agent it was for.
        raise CredentialRevoked(
            f"device {device_key} was revoked; only an enrolment token made for it re-admits it"
        )
    # Used once, atomically: of two logins racing with one token, one wins.
    consumed = await session.execute(
        update(EnrolmentToken)
        .where(EnrolmentToken.id == enrolment.id, EnrolmentToken.used_at.is_(None))
        .values(used_at=now, device_key=device_key)
        .returning(EnrolmentToken.id)
        .execution_options(synchronize_session=False)
    )
    enrolment_id = consumed.scalar_one_or_none()
    if enrolment_id is None:
        raise EnrolmentInvalid("enrolment token unknown, expired or already used")

    if credential is None:
        session.add(
            DeviceCredential(
                device_key=device_key,
                public_key=public_key,
                enrolment_id=enrolment_id,
                created_at=now,
                last_auth_at=now,
            )
        )
    else:  # re-admitted by an operator, with a new key and nothing of the old device's
        credential.public_key = public_key
        credential.enrolment_id = enrolment_id
        credential.created_at = now
        credential.revoked_at = None
        credential.last_auth_at = now
        await _forget_tenants(session, device_key)
    try:
        await session.flush()
    except IntegrityError as err:
        raise KeyMismatch("this public key already belongs to another device") from err
    return Authenticated(device_key, public_key, enrolled_now=True, readmitted=readmitting)


async def _forget_tenants(session: AsyncSession, device_key: str) -> None:
    """A re-admitted device is a new machine as far as tenants go: no grants, and its
    declared interfaces are for no tenant until an operator says again."""
    await session.execute(delete(DeviceGrant).where(DeviceGrant.device_key == device_key))
    await session.execute(
        update(DeviceInterface).where(DeviceInterface.device_key == device_key).values(tenants=[])
    )


async def revoke(*, session: AsyncSession, device_key: str) -> bool:
    """Revoke the device's credential and remember its key for good; False when it has
    none."""
    now = utcnow()
    result = await session.execute(
        update(DeviceCredential)
        .where(DeviceCredential.device_key == device_key, DeviceCredential.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(DeviceCredential.public_key)
    )
    public_key = result.scalar_one_or_none()
    if public_key is not None:
        await session.execute(
            insert_new(
                session,
                RevokedDeviceKey.__table__,  # type: ignore[arg-type]
                index_elements=["public_key"],
            ).values(public_key=public_key, device_key=device_key, revoked_at=now)
        )
        return True
    existing = await session.scalar(
        select(DeviceCredential.device_key).where(DeviceCredential.device_key == device_key)
    )
    return existing is not None
