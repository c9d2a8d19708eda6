import pytest
from sqlalchemy import func, select

from edgecloud_gateway.accounts import service
from edgecloud_gateway.accounts.exceptions import RegistrationClosed, WeakPassword
from edgecloud_gateway.accounts.models import Tenant, User
from edgecloud_servicekit.db import transaction

QUOTAS = service.TenantQuotas(containers=5, storage_bytes=1 << 30, api_per_minute=60)


async def count(sessions, model) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_invite_only_registration_refuses_and_creates_nothing(sessions) -> None:
    users, tenants = await count(sessions, User), await count(sessions, Tenant)
    with pytest.raises(RegistrationClosed):
        async with transaction(sessions) as session:
            await service.register(
                session=session,
                username="newcomer",
                password="correct horse battery",
                tenant_name=None,
                invitation_token=None,
                open_registration=False,
                quotas=QUOTAS,
            )
    assert (await count(sessions, User), await count(sessions, Tenant)) == (users, tenants)


async def test_new_tenants_get_the_default_quotas(sessions) -> None:
    async with transaction(sessions) as session:
        registered = await service.register(
            session=session,
            username="quota-user",
            password="correct horse battery",
            tenant_name=None,
            invitation_token=None,
            open_registration=True,
            quotas=QUOTAS,
        )
    assert (registered.tenant.quota_containers, registered.tenant.quota_api_per_minute) == (5, 60)


def test_password_rules_are_all_reported() -> None:
    with pytest.raises(WeakPassword) as weak:
        service.passwords.check_strength("aaaa", username="bob")
    assert weak.value.extra["problems"] == [
        "use at least 10 characters",
        "use at least 5 different characters",
    ]
