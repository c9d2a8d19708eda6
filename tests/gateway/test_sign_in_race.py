"""A sign-in racing a password change: the token it issues must not outlive the change.

On PostgreSQL, where the two transactions really overlap: the change has written the new
password (not yet committed) when a sign-in with the old one checks it; the sign-in waits
for the account's row, sees the change once it commits, and is refused, instead of issuing
a token the change's revocation had already passed by.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_gateway.accounts import passwords, service
from edgecloud_gateway.accounts.exceptions import InvalidCredentials
from edgecloud_gateway.accounts.models import User
from edgecloud_gateway.accounts.throttle import ThrottlePolicy
from edgecloud_gateway.audit.service import Entry
from edgecloud_gateway.tokens import service as tokens_service
from edgecloud_servicekit import migrations
from edgecloud_servicekit.db import transaction
from tests.support.databases import session_factory
from tests.support.stack import PG_PORT, create_pg_database, drop_pg_database
from tests.support.users import unique

QUOTAS = service.TenantQuotas(containers=5, storage_bytes=1 << 30, api_per_minute=60)
ROOMY = ThrottlePolicy(100, timedelta(seconds=1), timedelta(minutes=15))
POLICIES = {"pair": ROOMY, "address": ROOMY, "account": ROOMY}
OLD, NEW = "the old passphrase", "the new passphrase"


@pytest.fixture(scope="module")
async def pg() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    name = await asyncio.to_thread(create_pg_database)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{PG_PORT}/{name}"
    try:
        await asyncio.to_thread(migrations.upgrade, package="edgecloud_gateway", database_url=url)
        async with session_factory(url) as factory:
            yield factory
    finally:
        await asyncio.to_thread(drop_pg_database, name)


async def waiting_on_a_lock(sessions: async_sessionmaker[AsyncSession]) -> bool:
    async with sessions() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


async def test_a_sign_in_racing_a_password_change_gets_no_token(pg) -> None:
    async with transaction(pg) as session:
        user = (
            await service.register(
                session=session,
                username=unique("racer"),
                password=OLD,
                tenant_name=None,
                invitation_token=None,
                open_registration=True,
                quotas=QUOTAS,
            )
        ).user
        username, user_id = user.username, user.id

    async def sign_in() -> None:
        async with transaction(pg) as session:
            await service.sign_in(
                session=session,
                sessions=pg,
                username=username,
                password=OLD,
                tenant_name=None,
                address="10.0.0.1",
                lifetime=timedelta(hours=1),
                policies=POLICIES,
                audit=Entry(action="auth.login"),
            )

    async with transaction(pg) as change:
        row = await change.get(User, user_id)
        assert row is not None
        row.password_hash = await passwords.hash_password(NEW)
        await tokens_service.revoke_all_user_tokens(session=change, user_id=user_id)
        racing = asyncio.create_task(sign_in())
        async with asyncio.timeout(30):
            while not await waiting_on_a_lock(pg):
                assert not racing.done(), racing.exception()
                await asyncio.sleep(0.02)
    with pytest.raises(InvalidCredentials):
        await racing
