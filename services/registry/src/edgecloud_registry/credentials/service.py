"""Enrolment tokens and device credentials (Ed25519 public keys).

A new agent makes its own key pair, then logs in with WAMP-cryptosign giving its
public key and the operator's one-time enrolment token. The router asks
:func:`authenticate` (through the registry's authenticator procedure), which consumes
the token and records the public key, atomically. Later logins need only the key.
"""

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.identity import KEY_PATTERN
from edgecloud_contracts.uris import SERVICE_AUTHIDS
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.secret_tokens import hash_token, new_token

from .exceptions import CredentialRevoked, EnrolmentInvalid, KeyMismatch, UnknownDevice
from .models import DeviceCredential, EnrolmentToken

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


async def create_enrolment(
    *, session: AsyncSession, created_by: str, ttl: timedelta, note: str = ""
) -> IssuedEnrolment:
    """Issue a one-time enrolment token; only its hash is stored."""
    token = new_token(TOKEN_PREFIX)
    now = utcnow()
    row = EnrolmentToken(
        id=str(uuid.uuid4()),
        token_hash=hash_token(token),
        note=note,
        created_by=created_by,
        created_at=now,
        expires_at=now + ttl,
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

    consumed = await session.execute(
        update(EnrolmentToken)
        .where(
            EnrolmentToken.token_hash == hash_token(enrolment_token),
            EnrolmentToken.used_at.is_(None),
            EnrolmentToken.expires_at > now,
        )
        .values(used_at=now, device_key=device_key)
        .returning(EnrolmentToken.id)
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
    else:  # re-enrolment after a revocation
        credential.public_key = public_key
        credential.enrolment_id = enrolment_id
        credential.created_at = now
        credential.revoked_at = None
        credential.last_auth_at = now
    try:
        await session.flush()
    except IntegrityError as err:
        raise KeyMismatch("this public key already belongs to another device") from err
    return Authenticated(device_key, public_key, enrolled_now=True)


async def revoke(*, session: AsyncSession, device_key: str) -> bool:
    """Revoke the device's credential; False when it has none."""
    result = await session.execute(
        update(DeviceCredential)
        .where(DeviceCredential.device_key == device_key, DeviceCredential.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(DeviceCredential.device_key)
    )
    if result.scalar_one_or_none() is not None:
        return True
    existing = await session.scalar(
        select(DeviceCredential.device_key).where(DeviceCredential.device_key == device_key)
    )
    return existing is not None
