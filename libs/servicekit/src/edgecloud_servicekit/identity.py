"""The caller's identity, as the gateway vouches for it to the other services.

The gateway signs a short-lived token (HS256, shared secret) naming the user, the
tenant and the roles, with the receiving service as audience. Every service verifies it
on every request and scopes its queries by the tenant in it: no service trusts a
caller just because it reached the internal port.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Request

from .problems import Unauthenticated

ISSUER = "edgecloud-gateway"
IDENTITY_HEADER = "X-Edgecloud-Identity"
DEFAULT_LIFETIME = timedelta(seconds=60)

OPERATOR = "operator"
TENANT_ADMIN = "tenant_admin"
MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    username: str
    tenant_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    quotas: Mapping[str, int] = field(default_factory=dict)
    """The tenant's quotas (``containers``, ``storage_bytes``), for the services that own
    those resources to enforce."""

    @property
    def is_operator(self) -> bool:
        return OPERATOR in self.roles


def sign_identity(
    identity: Identity,
    *,
    secret: str,
    audience: str,
    lifetime: timedelta = DEFAULT_LIFETIME,
    now: datetime | None = None,
) -> str:
    issued = now or datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "sub": identity.user_id,
        "name": identity.username,
        "tenant": identity.tenant_id,
        "roles": sorted(identity.roles),
        "quotas": dict(identity.quotas),
        "iat": issued,
        "exp": issued + lifetime,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_identity(token: str, *, secret: str, audience: str) -> Identity:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError as err:
        raise Unauthenticated("identity token expired", code="identity_expired") from err
    except jwt.InvalidTokenError as err:
        raise Unauthenticated("identity token invalid", code="identity_invalid") from err
    return Identity(
        user_id=str(claims["sub"]),
        username=str(claims.get("name", "")),
        tenant_id=str(claims.get("tenant", "")),
        roles=frozenset(str(role) for role in claims.get("roles", [])),
        quotas={str(k): int(v) for k, v in (claims.get("quotas") or {}).items()},
    )


async def caller_identity(request: Request) -> Identity:
    """FastAPI dependency of internal routes: the verified identity, or 401."""
    token = request.headers.get(IDENTITY_HEADER)
    if not token:
        raise Unauthenticated("identity token missing", code="identity_missing")
    settings = request.app.state.settings
    return verify_identity(token, secret=settings.secret, audience=settings.service_name)


CallerDep = Annotated[Identity, Depends(caller_identity)]
