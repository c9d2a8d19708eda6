"""Short-lived grants that let one device move one artifact's bytes without a user token.

The orchestrator hands a node a URL carrying such a grant with each deployment (and asks
for a fresh one when the node reports it expired); storage checks it. A grant names the
artifact, its tenant, the device and the direction, so it cannot be replayed for anything
else. Signed with a key derived from the services' shared secret, never the secret itself.
"""

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

import jwt

AUDIENCE = "edgecloud.storage.transfer"
DEFAULT_TTL_S = 15 * 60

Direction = Literal["download", "upload", "logs"]
"""``logs``: the grant names a container, whose output the device ships as it runs."""


class TransferDenied(ValueError):
    """The grant is missing, forged, expired or for something else."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class TransferGrant:
    artifact_id: str
    tenant_id: str
    device_key: str
    direction: Direction


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"edgecloud transfer grants", hashlib.sha256).digest()


def sign_transfer(grant: TransferGrant, *, secret: str, ttl_s: float = DEFAULT_TTL_S) -> str:
    now = int(time.time())
    claims = {
        "aud": AUDIENCE,
        "art": grant.artifact_id,
        "ten": grant.tenant_id,
        "dev": grant.device_key,
        "dir": grant.direction,
        "iat": now,
        "exp": now + int(ttl_s),
    }
    return jwt.encode(claims, _key(secret), algorithm="HS256")


def verify_transfer(
    token: str, *, secret: str, artifact_id: str, direction: Direction
) -> TransferGrant:
    """The grant in ``token`` if it is genuine, current, and for this artifact and direction."""
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["exp", "aud", "art", "ten", "dev", "dir"]},
        )
    except jwt.ExpiredSignatureError as err:
        raise TransferDenied("the transfer grant expired", expired=True) from err
    except jwt.InvalidTokenError as err:
        raise TransferDenied("not a valid transfer grant") from err
    if claims["art"] != artifact_id or claims["dir"] != direction:
        raise TransferDenied("the transfer grant is for another artifact or direction")
    return TransferGrant(
        artifact_id=str(claims["art"]),
        tenant_id=str(claims["ten"]),
        device_key=str(claims["dev"]),
        direction=direction,
    )
