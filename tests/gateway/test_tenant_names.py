"""A tenant's name cannot look like a tenant id, and a lookup by name or id is never confused
by one: a grant (or a sign-in, or a switch) meant for one tenant cannot reach another."""

import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_gateway.accounts import service, tenant_names
from edgecloud_gateway.accounts.exceptions import TenantNameInvalid
from edgecloud_gateway.accounts.models import Tenant
from edgecloud_gateway.tenants import service as tenants_service
from edgecloud_servicekit.db import transaction

QUOTAS = service.TenantQuotas(containers=5, storage_bytes=1 << 30, api_per_minute=60)


async def test_no_tenant_is_made_with_a_name_shaped_like_an_id(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessions) as session:
        victim = await tenants_service.create_tenant(session=session, name="victim", quotas=QUOTAS)
    for name in (victim.id, str(uuid.uuid4()), victim.id.upper()):
        with pytest.raises(TenantNameInvalid) as refused:
            async with transaction(sessions) as session:
                await tenants_service.create_tenant(session=session, name=name, quotas=QUOTAS)
        assert refused.value.status == 422
        assert refused.value.code == "tenant_name_invalid"
        with pytest.raises(TenantNameInvalid):
            async with transaction(sessions) as session:
                await service.register(
                    session=session,
                    username=f"u{uuid.uuid4().hex[:8]}",
                    password="correct horse battery",
                    tenant_name=name,
                    invitation_token=None,
                    open_registration=True,
                    quotas=QUOTAS,
                )
    # Without a tenant name the username names the tenant: the same rule holds for it.
    with pytest.raises(TenantNameInvalid):
        async with transaction(sessions) as session:
            await service.register(
                session=session,
                username=str(uuid.uuid4()),
                password="correct horse battery",
                tenant_name=None,
                invitation_token=None,
                open_registration=True,
                quotas=QUOTAS,
            )
    async with transaction(sessions) as session:
        ok = await tenants_service.create_tenant(
            session=session, name=f"lab-{uuid.uuid4().hex}", quotas=QUOTAS
        )
    assert ok.name.startswith("lab-")


async def found_id(session: AsyncSession, name_or_id: str) -> str | None:
    found = await service.find_tenant(session=session, name_or_id=name_or_id)
    return found.id if found is not None else None


async def test_a_tenant_named_with_another_ones_id_is_never_taken_for_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """As data stored before the rule could be: the lookup takes id-shaped input as an id."""
    async with transaction(sessions) as session:
        victim = await tenants_service.create_tenant(
            session=session, name=f"victim-{uuid.uuid4().hex[:8]}", quotas=QUOTAS
        )
        squatter = await tenants_service.create_tenant(
            session=session, name=f"squat-{uuid.uuid4().hex[:8]}", quotas=QUOTAS
        )
    async with transaction(sessions) as session:
        await session.execute(update(Tenant).where(Tenant.id == squatter.id).values(name=victim.id))
    async with sessions() as session:
        assert await found_id(session, victim.id) == victim.id
        assert await found_id(session, victim.name) == victim.id
        assert await found_id(session, squatter.id) == squatter.id
        named = select(Tenant).where(tenant_names.named(victim.id))
        both = list((await session.scalars(named)).all())
        assert [t.id for t in both] == [victim.id]
        # Signing in to, or switching to, one of a user's tenants picks the same way.
        both = [
            await session.get_one(Tenant, squatter.id),
            await session.get_one(Tenant, victim.id),
        ]
        assert [t.id for t in both if tenant_names.is_named(t, victim.id)] == [victim.id]
    # Created first or last, a squatter is never the answer for its victim's id.
    async with transaction(sessions) as session:
        await session.execute(update(Tenant).where(Tenant.id == victim.id).values(name=squatter.id))
    async with sessions() as session:
        assert await found_id(session, squatter.id) == squatter.id
