"""Tenants and users made through the public API, as a person would."""

import secrets
from dataclasses import dataclass

import httpx

from edgecloud_servicekit.identity import IDENTITY_HEADER, OPERATOR, Identity, sign_identity

from .stack import Stack


@dataclass
class Account:
    username: str
    password: str
    tenant_id: str
    tenant_name: str
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def login(stack: Stack, username: str, password: str, tenant: str | None = None) -> str:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        body = {"username": username, "password": password}
        if tenant:
            body["tenant"] = tenant
        response = await client.post("/api/v1/auth/login", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


async def operator_headers(stack: Stack) -> dict[str, str]:
    """The bootstrap operator's bearer token, as request headers."""
    return {"Authorization": f"Bearer {await login(stack, 'admin', stack.admin_password)}"}


async def register(
    stack: Stack,
    *,
    username: str | None = None,
    invitation: str | None = None,
    tenant: str | None = None,
) -> Account:
    """Sign up (a new tenant unless ``invitation`` is given) and sign in."""
    username = username or unique("user")
    password = secrets.token_urlsafe(16)
    body: dict[str, str] = {"username": username, "password": password}
    if invitation:
        body["invitation"] = invitation
    if tenant:
        body["tenant"] = tenant
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        response = await client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
    token = await login(stack, username, password)
    return Account(
        username=username,
        password=password,
        tenant_id=created["tenant"]["id"],
        tenant_name=created["tenant"]["name"],
        user_id=created["user"]["id"],
        token=token,
    )


async def invite(stack: Stack, admin: Account, role: str = "member") -> str:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        response = await client.post(
            "/api/v1/invitations", json={"role": role}, headers=admin.headers
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def scheduler_headers(stack: Stack, tenant_id: str) -> dict[str, str]:
    """What the migration-scheduler sends the orchestrator when it moves a tenant's
    container (the relocation of a migration or a cold restart)."""
    scheduler = Identity(
        user_id="migration-scheduler",
        username="migration-scheduler",
        tenant_id=tenant_id,
        roles=frozenset({OPERATOR}),
    )
    token = sign_identity(scheduler, secret=stack.internal_secret, audience="orchestrator")
    return {IDENTITY_HEADER: token}
