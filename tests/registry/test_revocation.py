"""Revocation is for good: a revoked key never comes back, a revoked device does not come
back with an ordinary enrolment token, and a device an operator re-admits (with a token
made for it, and a new key) starts with no grants and its interfaces for no tenant. On
SQLite and on PostgreSQL."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_registry.credentials import service
from edgecloud_registry.credentials.exceptions import (
    CredentialError,
    CredentialRevoked,
    EnrolmentInvalid,
)
from edgecloud_registry.devices.models import DeviceGrant
from edgecloud_registry.interfaces.models import DeviceInterface
from edgecloud_servicekit import migrations
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.problems import Conflict
from tests.support.databases import migrated_sessions, session_factory
from tests.support.stack import PG_PORT, create_pg_database, drop_pg_database

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Sessions]:
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("revocation")
        async with migrated_sessions(directory, "edgecloud_registry") as factory:
            yield factory
        return
    name = await asyncio.to_thread(create_pg_database)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{PG_PORT}/{name}"
    try:
        await asyncio.to_thread(migrations.upgrade, package="edgecloud_registry", database_url=url)
        async with session_factory(url) as factory:
            yield factory
    finally:
        await asyncio.to_thread(drop_pg_database, name)


def new_key() -> str:
    return secrets.token_hex(32)


def device_key() -> str:
    return f"rpi_{secrets.token_hex(6)}"


async def enrolment(sessions: Sessions, device: str | None = None) -> str:
    # An ordinary token is asked for as before there were tokens for one device.
    only_for = {"device_key": device} if device else {}
    async with transaction(sessions) as session:
        issued = await service.create_enrolment(
            session=session, created_by="op", ttl=timedelta(hours=1), **only_for
        )
    return issued.token


async def log_in(sessions: Sessions, device: str, key: str, token: str | None) -> None:
    async with transaction(sessions) as session:
        await service.authenticate(
            session=session, device_key=device, public_key=key, enrolment_token=token
        )


async def refused(
    sessions: Sessions, device: str, key: str, token: str | None, error: type[CredentialError]
) -> None:
    with pytest.raises(CredentialError) as caught:
        await log_in(sessions, device, key, token)
    assert type(caught.value) is error, caught.value.message


async def revoke(sessions: Sessions, device: str) -> None:
    async with transaction(sessions) as session:
        assert await service.revoke(session=session, device_key=device)


async def enrolled_and_revoked(sessions: Sessions) -> tuple[str, str]:
    device, key = device_key(), new_key()
    await log_in(sessions, device, key, await enrolment(sessions))
    await revoke(sessions, device)
    return device, key


async def test_a_revoked_device_does_not_come_back_with_any_enrolment_token(backend) -> None:
    device, old_key = await enrolled_and_revoked(backend)
    token = await enrolment(backend)
    await refused(backend, device, new_key(), token, CredentialRevoked)
    await refused(backend, device, old_key, token, CredentialRevoked)
    await refused(backend, device, old_key, None, CredentialRevoked)
    # The token was not used up: the new agent it was for still enrols with it.
    await log_in(backend, device_key(), new_key(), token)


async def test_a_revoked_key_never_comes_back_under_another_name(backend) -> None:
    _, old_key = await enrolled_and_revoked(backend)
    await refused(backend, device_key(), old_key, await enrolment(backend), CredentialRevoked)


async def test_a_readmitted_device_starts_with_no_grants_and_its_old_key_stays_out(
    backend,
) -> None:
    device, old_key = await enrolled_and_revoked(backend)
    async with transaction(backend) as session:
        session.add(
            DeviceGrant(device_key=device, tenant_id="t-1", granted_by="op", created_at=utcnow())
        )
        session.add(
            DeviceInterface(
                device_key=device,
                name="camera",
                kind="device",
                path="/dev/video0",
                container_path="/dev/video0",
                topic=None,
                read_only=True,
                shareable=False,
                tenants=["t-1"],
                description="",
                declared_by="op",
                updated_at=utcnow(),
            )
        )
    # A token made for another device does not re-admit this one.
    await refused(
        backend, device, new_key(), await enrolment(backend, device_key()), EnrolmentInvalid
    )

    key = new_key()
    await log_in(backend, device, key, await enrolment(backend, device))
    async with backend() as session:
        grants = (
            await session.scalars(select(DeviceGrant).where(DeviceGrant.device_key == device))
        ).all()
        interface = await session.get(DeviceInterface, (device, "camera"))
    assert list(grants) == []
    assert interface is not None
    assert interface.tenants == []
    await log_in(backend, device, key, None)  # the new key logs in
    await refused(backend, device, old_key, None, CredentialRevoked)
    await refused(backend, device_key(), old_key, await enrolment(backend), CredentialRevoked)


async def test_a_token_for_an_enrolled_device_is_refused(backend) -> None:
    device, key = device_key(), new_key()
    await log_in(backend, device, key, await enrolment(backend))
    with pytest.raises(Conflict) as refused_token:
        await enrolment(backend, device)
    assert refused_token.value.code == "device_enrolled"
